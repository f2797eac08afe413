"""Notification delivery state: in-app inboxes, dedupe, fatigue counters, receipts.

The decision for one candidate (duplicate? opted out? blocked or muted? over the fatigue
cap?) and its in-app delivery happen in one script, atomically, keyed by the
notification id (derived from the recipient, the kind and the source event), so a
candidate seen twice is decided once and a redelivered batch changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import msgspec
import redis

from starling.store import keys

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

# KEYS: state, inbox, prefs, blocked, muted, fatigue, receipt
# ARGV: id, kind, actor ('' if none), score, entry, fatigue cap, fatigue ttl, inbox cap,
#       now, push enabled, state ttl
_DECIDE = """
local prior = redis.call('HGET', KEYS[1], ARGV[1])
if prior then
  return prior
end
local status
local actor = ARGV[3]
if redis.call('HGET', KEYS[3], ARGV[2]) == 'off' then
  status = 'filtered:preference'
elseif actor ~= '' and redis.call('SISMEMBER', KEYS[4], actor) == 1 then
  status = 'filtered:blocked'
elseif actor ~= '' and redis.call('SISMEMBER', KEYS[5], actor) == 1 then
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

    def decide(
        self, pipe: Any, recipient: int, entry: InboxEntry, *, push_enabled: bool, now_ms: int
    ) -> None:
        """Queue the decide-and-deliver script; its result is the `DeliveryStatus`."""
        bucket = entry.time_ms // (self.fatigue_window_s * 1000)
        self._decide(
            keys=[
                keys.notification_state(recipient),
                keys.inbox(recipient),
                keys.preferences(recipient),
                keys.blocked(recipient),
                keys.muted(recipient),
                keys.fatigue(recipient, bucket),
                keys.receipt(entry.id),
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
