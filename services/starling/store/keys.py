"""Every key Starling keeps in the store (Valkey/Redis), defined once.

Readers (the gateway, tests, operators) and writers (the stream services) build key names
only through these functions, so a rename is one edit. User and tweet ids are decimal.

| key | type | content |
| --- | --- | --- |
| `tl:{user}` | sorted set | home timeline: tweet ids scored by tweet id (time order), capped |
| `tw:{tweet}` | string | the enriched tweet (JSON, as on `tweets.enriched`), expiring |
| `g:followers:{user}` / `g:following:{user}` | set | the follow graph |
| `g:blocked:{user}` / `g:muted:{user}` | set | accounts `user` blocked / muted (now) |
| `g:blocklog:{user}:{other}` / `g:mutelog:{user}:{other}` | sorted set | `on:{ms}` / `off:{ms}` |
|  |  | block (mute) and undo changes scored by event time (ms), the newest few |
| `u:handles` | hash | handle (lower case) -> user id |
| `wtf:{user}` | hash | latest who-to-follow list: `time_ms`, `items` (JSON) |
| `tr:counts:{window}` | hash | hashtag -> tweets in the window (window = start, Unix seconds) |
| `tr:seen:{window}` | set | tweet ids already counted in the window (makes counting idempotent) |
| `tr:rank:{window}` | sorted set | hashtag scored by its tweets in the window (leaders) |
| `tr:latest` | string | start of the latest window counted (the current window) |
| `tr:first` | string | start of the first window ever counted (baseline warm-up) |
| `tr:open` | set | windows with counts that are not closed yet |
| `tr:closed` | sorted set | closed windows (member and score: window start) |
| `tr:window:{window}` | string | the window's trends (JSON list, ranked) |
| `tr:current` | string | the trends of the latest closed window (JSON) |
| `ntf:inbox:{user}` | sorted set | in-app notifications (JSON) scored by event time (ms), capped |
| `ntf:state:{user}` | hash | notification id -> delivery state (dedupe by source event) |
| `ntf:fatigue:{user}:{bucket}` | string | notifications delivered in the fatigue window |
| `ntf:prefs:{user}` | hash | `<kind>` or `push` -> `off` to opt out |
| `ntf:receipt:{notification}` | hash | channel -> `<status> <time>` delivery receipts |
| `ntf:held` | sorted set | candidates held for the settle delay (`[recipient, entry]` JSON) |
|  |  | scored by when they may be decided (wall clock, ms) |
| `id:revoked:{session}` | string | a signed-out session (identity) until its tokens expire |
| `id:account:{name}` | hash | identity account (name lower case): `user_id`, `username`, `hash` |
| `id:next_user` | string | the last user id given to a sign-up (ids start at 1 000 000 000) |
| `id:rl:{scope}:{subject}` | sorted set | attempts in a sign-in limit's window, by time (ms) |

Pub/sub channels (not keys: nothing is stored, a message reaches whoever listens now):

| channel | published by | message (JSON, `starling.store.live`) |
| --- | --- | --- |
| `live:user:{user}` | timelines, notifier, after the durable write | `{"kind": "timeline", ...}` |
|  |  | or `{"kind": "notification", ...}` |
| `live:tweets` | ingestion, after the fan-out write, once per batch | `{"kind": "tweets", ...}` |
|  |  | `"tweets": [[tweet, author], ...]` |
"""

from __future__ import annotations

HANDLES = "u:handles"
TRENDS_FIRST_WINDOW = "tr:first"
TRENDS_LATEST_WINDOW = "tr:latest"
TRENDS_CLOSED = "tr:closed"
TRENDS_OPEN = "tr:open"
TRENDS_CURRENT = "tr:current"


TIMELINE_PREFIX = b"tl:"


def timeline(user_id: int) -> str:
    return f"tl:{user_id}"


def timeline_of_member(member: bytes | int) -> bytes:
    """Timeline key of a user id as a set member (bytes, as SMEMBERS returns) or an int."""
    return TIMELINE_PREFIX + (member if isinstance(member, bytes) else str(member).encode())


# Prefixes of the keys store scripts build from ids they read (see `starling.gateway.timeline`).
TWEET_PREFIX = "tw:"
BLOCKED_PREFIX = "g:blocked:"


def tweet(tweet_id: int) -> str:
    return f"{TWEET_PREFIX}{tweet_id}"


def followers(user_id: int) -> str:
    return f"g:followers:{user_id}"


def following(user_id: int) -> str:
    return f"g:following:{user_id}"


def blocked(user_id: int) -> str:
    return f"{BLOCKED_PREFIX}{user_id}"


def muted(user_id: int) -> str:
    return f"g:muted:{user_id}"


def block_log(user_id: int, other: int) -> str:
    """When `user_id` blocked and unblocked `other` (event time): see `starling.store.graph`."""
    return f"g:blocklog:{user_id}:{other}"


def mute_log(user_id: int, other: int) -> str:
    return f"g:mutelog:{user_id}:{other}"


def who_to_follow(user_id: int) -> str:
    return f"wtf:{user_id}"


def trend_counts(window_start: int) -> str:
    return f"tr:counts:{window_start}"


def trend_seen(window_start: int) -> str:
    return f"tr:seen:{window_start}"


def trend_rank(window_start: int) -> str:
    return f"tr:rank:{window_start}"


def trend_window(window_start: int) -> str:
    return f"tr:window:{window_start}"


def inbox(user_id: int) -> str:
    return f"ntf:inbox:{user_id}"


def notification_state(user_id: int) -> str:
    return f"ntf:state:{user_id}"


def fatigue(user_id: int, bucket: int) -> str:
    return f"ntf:fatigue:{user_id}:{bucket}"


def preferences(user_id: int) -> str:
    return f"ntf:prefs:{user_id}"


def receipt(notification_id: str) -> str:
    return f"ntf:receipt:{notification_id}"


NOTIFICATIONS_HELD = "ntf:held"


# Identity (the built-in identity service writes, the gateway reads).
def revoked_session(session_id: str) -> str:
    return f"id:revoked:{session_id}"


# Accounts and sign-in limits of the built-in identity service (only it reads them).
IDENTITY_NEXT_USER = "id:next_user"


def identity_account(username: str) -> str:
    """An account by name; names are case-insensitive, so the key holds it lower-cased."""
    return f"id:account:{username.lower()}"


def identity_attempts(scope: str, subject: str) -> str:
    """Attempts in the sliding window of one limit (`account`, `address` or `signup`)."""
    return f"id:rl:{scope}:{subject}"


# Live updates for one user. The gateway PSUBSCRIBEs to the pattern once per pod and fans
# out in-process, so a connected client costs no store connection of its own.
LIVE_CHANNEL_PREFIX = "live:user:"
LIVE_CHANNEL_PATTERN = LIVE_CHANNEL_PREFIX + "*"


# New tweets fanned out by ingestion: one message per batch on one channel, not one per
# follower (fan-out is the hot path). Gateways route them to the followers they serve.
# Not matched by LIVE_CHANNEL_PATTERN, so a pod subscribes to both on one connection.
LIVE_TWEETS_CHANNEL = "live:tweets"


def live_channel(user_id: int) -> str:
    return f"{LIVE_CHANNEL_PREFIX}{user_id}"


def user_of_live_channel(channel: bytes | str) -> int | None:
    """The user id a live channel is for, or None for a name that is not one."""
    name = channel.decode() if isinstance(channel, bytes) else channel
    suffix = name.removeprefix(LIVE_CHANNEL_PREFIX)
    if suffix == name or not suffix.isdigit():
        return None
    return int(suffix)
