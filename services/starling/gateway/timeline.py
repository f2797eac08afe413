"""One page of a home timeline as its reader may see it: blocks and mutes applied at read time.

Ingestion fans a tweet out to every follower's timeline without looking at blocks or
mutes (the fan-out is the hot path, and a mute can be undone), and recommendations are
merged the same way, so the filter is here, on the way out. A tweet is left out when its
author is in the reader's `g:blocked` or `g:muted`, or the author's `g:blocked` holds
the reader (a block keeps the blocker's tweets from the blocked account, as on Twitter;
the follow graph keeps the follow, so without this the block would not reach the home
timeline). Unblocking or unmuting shows the tweets again: nothing is deleted.

The author comes from the stored tweet body (`tw:{id}`). A tweet whose body has expired
has no known author and is kept, with a `null` body, as before the filter existed.

One script per request reads the page: it walks the timeline newest first from `before`,
drops hidden tweets, and stops at `limit` visible ones or after scanning
`limit * scan_factor` entries, whichever comes first, so one request's work is bounded
however much of the timeline is hidden. `next_before` is the id of the last entry
scanned (shown or not): entries newer than it were all decided on, so paging from it
neither skips nor repeats; it is null only when nothing older is left, so a short page
with a cursor means "hidden tweets were skipped, continue". The script builds tweet and
blocked-set keys from the ids it reads, which a single-node store (Starling's) allows
and Redis Cluster would not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from starling.store import keys

# KEYS: the reader's timeline, blocked and muted sets.
# ARGV: reader id; before ('' for the newest); limit; most entries to scan; the prefixes
# of tweet-body and blocked-set keys.
# Scores are tweet ids as doubles, which tie for ids past 2^53, so `before` is inclusive
# by score and entries not strictly older than it by id are skipped: ties across a page
# boundary are neither lost nor repeated. Reply: next_before (nil when nothing older is
# left), then tweet id, body (nil when expired) for each visible tweet, newest first.
_VISIBLE_PAGE = """
local reader, before = ARGV[1], ARGV[2]
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local tweet_prefix, blocked_prefix = ARGV[5], ARGV[6]

-- Decimal ids without leading zeros: the shorter is older, else compare as text.
local function older(id)
  if before == '' then return true end
  if #id ~= #before then return #id < #before end
  return id < before
end

-- Authors repeat on a page: each is looked up once.
local hidden_authors = {}
local function hidden(author)
  local known = hidden_authors[author]
  if known == nil then
    known = author ~= reader and (
      redis.call('SISMEMBER', KEYS[2], author) == 1
      or redis.call('SISMEMBER', KEYS[3], author) == 1
      or redis.call('SISMEMBER', blocked_prefix .. author, reader) == 1)
    hidden_authors[author] = known
  end
  return known
end

local high = '+inf'
if before ~= '' then high = before end
local reply = {false}
local shown, scanned, offset = 0, 0, 0
local last = false
while true do
  -- Read only as many as could still be used (at least one, to see whether more exist).
  local count = math.max(1, math.min(limit - shown, budget - scanned))
  local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], high, '-inf', 'LIMIT', offset, count)
  if #ids == 0 then
    return reply
  end
  offset = offset + #ids
  for _, id in ipairs(ids) do
    if older(id) then
      if shown == limit or scanned == budget then
        reply[1] = last
        return reply
      end
      scanned = scanned + 1
      last = id
      local body = redis.call('GET', tweet_prefix .. id)
      local author = body and string.match(body, '"author_id"%s*:%s*(%d+)')
      if not (author and hidden(author)) then
        reply[#reply + 1] = id
        reply[#reply + 1] = body
        shown = shown + 1
      end
    end
  end
end
"""


@dataclass(frozen=True, slots=True)
class TimelinePage:
    # (tweet id, enriched tweet JSON or None when its body expired), newest first.
    tweets: list[tuple[int, bytes | None]]
    # Pass as `before` for the next page; None when nothing older is left.
    next_before: int | None


class VisibleTimeline:
    """Reads one page of a user's timeline without the tweets hidden from them (blocking
    call: one store round trip)."""

    def __init__(self, client: redis.Redis, scan_factor: int) -> None:
        if scan_factor < 1:
            raise ValueError(f"scan factor must be >= 1, got {scan_factor}")
        self.scan_factor = scan_factor
        self._script = client.register_script(_VISIBLE_PAGE)

    def __call__(self, user_id: int, limit: int, before: int | None = None) -> TimelinePage:
        reply: Any = self._script(
            keys=[keys.timeline(user_id), keys.blocked(user_id), keys.muted(user_id)],
            args=[
                user_id,
                "" if before is None else before,
                limit,
                limit * self.scan_factor,
                keys.TWEET_PREFIX,
                keys.BLOCKED_PREFIX,
            ],
        )
        cursor, rest = reply[0], reply[1:]
        tweets = [(int(rest[i]), rest[i + 1]) for i in range(0, len(rest), 2)]
        return TimelinePage(tweets, int(cursor) if cursor is not None else None)
