"""Notification delivery state: in-app inboxes, dedupe, fatigue counters, receipts.

The decision for one candidate (duplicate? opted out? blocked or muted? over the fatigue
cap?) and its in-app delivery happen in one script, atomically, keyed by the
notification id (derived from the recipient, the kind and the source event), so a
candidate seen twice is decided once and a redelivered batch changes nothing.

"Blocked or muted" is asked at the candidate's event time, from the per-pair logs of
block/mute changes (`starling.store.graph`), not of the current sets: a notification
whose event time is after a block's is filtered whenever either arrives. Candidates the
notifier holds for its settle delay wait in `ntf:held` (`hold`, `claim_due`, `release`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import msgspec
import redis

from starling.store import keys
from starling.store.graph import RELATION_AT_LUA

DEFAULT_INBOX_CAP = 200
STATE_TTL_S = 7 * 24 * 3600


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"  # in-app only
    PUSH_PENDING = "push_pending"  # in-app done, push not yet confirmed
    PUSHED = "pushed"
    PUSH_FAILED = "push_failed"
    CAPPED = "capped"
    FILTERED_PREFERENCE = "filtered:preference"
    FILTERED_BLOCKED = "filtered:blocked"
    FILTERED_MUTED = "filtered:muted"


DELIVERED_STATUSES = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.PUSH_PENDING,
        DeliveryStatus.PUSHED,
        DeliveryStatus.PUSH_FAILED,
    }
)

# KEYS: state, inbox, prefs, blocked, muted, fatigue, receipt, block log, mute log
# ARGV: id, kind, actor ('' if none), score (event time, ms), entry, fatigue cap,
#       fatigue ttl, inbox cap, now, push enabled, state ttl
_DECIDE = (
    RELATION_AT_LUA
    + """
local prior = redis.call('HGET', KEYS[1], ARGV[1])
if prior then
  return prior
end
local status
local actor = ARGV[3]
if redis.call('HGET', KEYS[3], ARGV[2]) == 'off' then
  status = 'filtered:preference'
elseif actor ~= '' and relation_at(KEYS[8], KEYS[4], actor, ARGV[4]) then
  status = 'filtered:blocked'
elseif actor ~= '' and relation_at(KEYS[9], KEYS[5], actor, ARGV[4]) then
  status = 'filtered:muted'
elseif tonumber(redis.call('GET', KEYS[6]) or '0') >= tonumber(ARGV[6]) then
  status = 'capped'
else
  redis.call('INCR', KEYS[6])
  redis.call('EXPIRE', KEYS[6], ARGV[7])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
  local cap = tonumber(ARGV[8])
  if redis.call('ZCARD', KEYS[2]) > cap then
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -cap - 1)
  end
  redis.call('HSET', KEYS[7], 'inapp', 'delivered ' .. ARGV[9])
  redis.call('EXPIRE', KEYS[7], ARGV[11])
  if ARGV[10] == '1' and redis.call('HGET', KEYS[3], 'push') ~= 'off' then
    status = 'push_pending'
  else
    status = 'delivered'
  end
end
redis.call('HSET', KEYS[1], ARGV[1], status)
redis.call('EXPIRE', KEYS[1], ARGV[11])
return status
"""
)


# Held candidates due by `now` get a lease (their score moves to now + lease) in the same
# step, so two replicas do not decide one together, and one that dies holding a lease
# leaves it to be claimed again when the lease runs out.
# KEYS: held; ARGV: now, limit, lease end
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[3], member)
end
return due
"""


class InboxEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One in-app notification as stored (and served by the gateway)."""

    id: str
    kind: str
    time_ms: int
    source_event_id: str
    actor_id: int | None = None
    tweet_id: int | None = None
    message: str = ""


_entry_encoder = msgspec.json.Encoder()
_entry_decoder = msgspec.json.Decoder(InboxEntry)
_held_decoder = msgspec.json.Decoder(tuple[int, InboxEntry])


class NotificationStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        fatigue_cap: int,
        fatigue_window_s: int,
        inbox_cap: int = DEFAULT_INBOX_CAP,
    ) -> None:
        self.client = client
        self.fatigue_cap = fatigue_cap
        self.fatigue_window_s = fatigue_window_s
        self.inbox_cap = inbox_cap
        self._decide = client.register_script(_DECIDE)
        self._claim_due = client.register_script(_CLAIM_DUE)

    def decide(
        self, pipe: Any, recipient: int, entry: InboxEntry, *, push_enabled: bool, now_ms: int
    ) -> None:
        """Queue the decide-and-deliver script; its result is the `DeliveryStatus`."""
        bucket = entry.time_ms // (self.fatigue_window_s * 1000)
        actor = entry.actor_id if entry.actor_id is not None else 0  # logs unused then
        self._decide(
            keys=[
                keys.notification_state(recipient),
                keys.inbox(recipient),
                keys.preferences(recipient),
                keys.blocked(recipient),
                keys.muted(recipient),
                keys.fatigue(recipient, bucket),
                keys.receipt(entry.id),
                keys.block_log(recipient, actor),
                keys.mute_log(recipient, actor),
            ],
            args=[
                entry.id,
                entry.kind,
                "" if entry.actor_id is None else entry.actor_id,
                entry.time_ms,
                _entry_encoder.encode(entry),
                self.fatigue_cap,
                self.fatigue_window_s * 2,
                self.inbox_cap,
                now_ms,
                "1" if push_enabled else "0",
                STATE_TTL_S,
            ],
            client=pipe,
        )

    def hold(self, pipe: Any, recipient: int, entry: InboxEntry, until_ms: int) -> None:
        """Queue a candidate to be decided at `until_ms` (wall clock). NX: a redelivered
        candidate keeps its first deadline instead of being held again."""
        member = _entry_encoder.encode((recipient, entry))
        pipe.zadd(keys.NOTIFICATIONS_HELD, {member: until_ms}, nx=True)

    def claim_due(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> list[tuple[bytes, int, InboxEntry]]:
        """Held candidates due by `now_ms` (oldest first), leased for `lease_ms`: each as
        (member to `release` once decided, recipient, entry)."""
        raw: Any = self._claim_due(
            keys=[keys.NOTIFICATIONS_HELD], args=[now_ms, limit, now_ms + lease_ms]
        )
        claimed = []
        for member in raw:
            recipient, entry = _held_decoder.decode(member)
            claimed.append((member, recipient, entry))
        return claimed

    def release(self, pipe: Any, members: Sequence[bytes]) -> None:
        if members:
            pipe.zrem(keys.NOTIFICATIONS_HELD, *members)

    def held_count(self) -> int:
        return int(self.client.zcard(keys.NOTIFICATIONS_HELD))

    def record_push(
        self, pipe: Any, recipient: int, notification_id: str, ok: bool, detail: str, now_ms: int
    ) -> None:
        status = DeliveryStatus.PUSHED if ok else DeliveryStatus.PUSH_FAILED
        pipe.hset(keys.notification_state(recipient), notification_id, status.value)
        pipe.hset(
            keys.receipt(notification_id), "push", f"{status.value} {now_ms} {detail}".strip()
        )
        pipe.expire(keys.receipt(notification_id), STATE_TTL_S)

    def inbox(self, user_id: int, limit: int = 50) -> list[InboxEntry]:
        raw: Any = self.client.zrevrange(keys.inbox(user_id), 0, limit - 1)
        return [_entry_decoder.decode(member) for member in raw]

    def inbox_size(self, user_id: int) -> int:
        return int(self.client.zcard(keys.inbox(user_id)))

    def receipt(self, notification_id: str) -> dict[str, str]:
        raw: Any = self.client.hgetall(keys.receipt(notification_id))
        return {field.decode(): value.decode() for field, value in raw.items()}

    def status(self, user_id: int, notification_id: str) -> str | None:
        raw: Any = self.client.hget(keys.notification_state(user_id), notification_id)
        return raw.decode() if raw is not None else None

    def set_preference(self, user_id: int, channel_or_kind: str, enabled: bool) -> None:
        if enabled:
            self.client.hdel(keys.preferences(user_id), channel_or_kind)
        else:
            self.client.hset(keys.preferences(user_id), channel_or_kind, "off")


def statuses(results: Sequence[Any]) -> list[DeliveryStatus]:
    return [DeliveryStatus(r.decode() if isinstance(r, bytes) else r) for r in results]
