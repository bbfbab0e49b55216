"""Send rate limits as token buckets shared by every worker: a delivery's `max_per_hour`, and each
recipient domain's rate of `BEACON_DOMAIN_RATES` (across every delivery).

A bucket of N per hour refills N/3600 tokens a second and holds at most a minute of its rate
(`BURST_SECONDS`, at least one token): over any span of T seconds it gives at most its capacity plus
T times its rate. Missing, it is full. A send batch asks once for all its messages (`buckets_take`): each
message needs one token of every bucket it falls under, taken in the batch's order, all or nothing for
that message; the answer says which may go now and, for the others, how long until a token is back.
The batch hands over those, and releases the others to a later batch (see `deliveries.services.sending`).

Where: in Redis when `REDIS_URL` is set (one Lua script: read, refill, take, write, atomically), else in
the database (`RateBucket` rows under a row lock). Times are seconds since the epoch from the caller
(each worker's clock; a clock behind the bucket's last refill adds nothing), so the tests pass their own.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from deliveries.models import RateBucket
from profiles.emails import email_domain

BURST_SECONDS = 60
REDIS_KEY_PREFIX = "beacon:rate:"


class RateLimitsUnavailable(Exception):
    """The shared buckets cannot be reached (Redis down): nothing may be sent until they can."""


@dataclass(frozen=True)
class Limit:
    """One bucket: its key (`delivery:<id>`, `domain:<domain>`) and its rate."""

    key: str
    per_hour: int

    @property
    def per_second(self) -> float:
        return self.per_hour / 3600

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_hour * BURST_SECONDS / 3600)


@dataclass(frozen=True)
class Grant:
    """Which of the messages asked for may go now, in the order asked, and, when any may not, the seconds
    until a bucket that refused one has a token again."""

    granted: list[bool]
    wait_seconds: float = 0.0


def send_limits(*, delivery_id: int, max_per_hour: int | None, emails: Sequence[str]) -> tuple[list[Limit], list[tuple[int, ...]]]:
    """The buckets a batch of messages (their addresses, in order) falls under, and, per message, the
    indexes of its buckets in that list (empty: no limit)."""
    limits: list[Limit] = []
    if max_per_hour:
        limits.append(Limit(f"delivery:{delivery_id}", max_per_hour))
    shared = (0,) if max_per_hour else ()
    domain_rates: dict[str, int] = settings.BEACON_DOMAIN_RATES
    by_domain: dict[str, int] = {}
    demands = []
    for email in emails:
        domain = email_domain(email)
        if domain not in domain_rates:
            demands.append(shared)
            continue
        if domain not in by_domain:
            by_domain[domain] = len(limits)
            limits.append(Limit(f"domain:{domain}", domain_rates[domain]))
        demands.append(shared + (by_domain[domain],))
    return limits, demands


def _allocate(tokens: list[float], limits: list[Limit], demands: Sequence[tuple[int, ...]]) -> Grant:
    """Takes, in order, one token of each of a message's buckets for each message all of whose buckets
    have one; changes `tokens`. The Lua script below is this same walk."""
    granted = []
    short: set[int] = set()
    for demand in demands:
        empty = [index for index in demand if tokens[index] < 1]
        if empty:
            short.update(empty)
            granted.append(False)
            continue
        for index in demand:
            tokens[index] -= 1
        granted.append(True)
    wait = min(((1 - tokens[index]) / limits[index].per_second for index in short), default=0.0)
    return Grant(granted, wait)


def _refilled(limit: Limit, tokens: float, refilled_at: float, now: float) -> float:
    return min(limit.capacity, tokens + max(0.0, now - refilled_at) * limit.per_second)


class DatabaseBuckets:
    """The buckets as `RateBucket` rows, locked for the length of one take."""

    def take(self, limits: list[Limit], demands: Sequence[tuple[int, ...]], now: float) -> Grant:
        keys = [limit.key for limit in limits]
        with transaction.atomic():
            # A missing bucket is full; concurrent first takes insert it once.
            RateBucket.objects.bulk_create(
                [RateBucket(key=limit.key, tokens=limit.capacity, refilled_at=now) for limit in limits], ignore_conflicts=True
            )
            rows = {row.key: row for row in RateBucket.objects.select_for_update().filter(key__in=keys).order_by("key")}
            tokens = [_refilled(limit, rows[limit.key].tokens, rows[limit.key].refilled_at, now) for limit in limits]
            grant = _allocate(tokens, limits, demands)
            for limit, left in zip(limits, tokens):
                row = rows[limit.key]
                row.tokens, row.refilled_at = left, max(row.refilled_at, now)
            RateBucket.objects.bulk_update(rows.values(), ["tokens", "refilled_at"])
        return grant


# KEYS: the buckets. ARGV[1]: now; ARGV[2i], ARGV[2i+1]: bucket i's rate per second and capacity; the
# last ARGV: the messages' demands, space-separated, each its bucket numbers joined by '.'.
# Answers {"1"/"0" per message, seconds to wait} as strings (Redis would cut numbers to integers).
_TAKE_SCRIPT = """
local now = tonumber(ARGV[1])
local n = #KEYS
local tokens, rates, caps, stamps = {}, {}, {}, {}
for i = 1, n do
  rates[i] = tonumber(ARGV[2 * i])
  caps[i] = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 't', 'at')
  local t = tonumber(state[1]) or caps[i]
  local at = tonumber(state[2]) or now
  local elapsed = now - at
  if elapsed < 0 then elapsed = 0 end
  tokens[i] = math.min(caps[i], t + elapsed * rates[i])
  stamps[i] = math.max(at, now)
end
local granted = {}
local short = {}
for demand in string.gmatch(ARGV[2 * n + 2], '[^ ]+') do
  local buckets = {}
  local ok = true
  for number in string.gmatch(demand, '%d+') do
    local b = tonumber(number)
    buckets[#buckets + 1] = b
    if tokens[b] < 1 then ok = false; short[b] = true end
  end
  if ok then
    for _, b in ipairs(buckets) do tokens[b] = tokens[b] - 1 end
    granted[#granted + 1] = '1'
  else
    granted[#granted + 1] = '0'
  end
end
local wait = -1
for b, _ in pairs(short) do
  local w = (1 - tokens[b]) / rates[b]
  if wait < 0 or w < wait then wait = w end
end
if wait < 0 then wait = 0 end
for i = 1, n do
  -- Every digit kept: tostring() keeps 14, which loses the fraction of a second of a time since 1970.
  redis.call('HSET', KEYS[i], 't', string.format('%.17g', tokens[i]), 'at', string.format('%.17g', stamps[i]))
  -- Expires when it would be full again: missing means full.
  redis.call('PEXPIRE', KEYS[i], math.ceil((caps[i] - tokens[i]) / rates[i] * 1000) + 1000)
end
return {table.concat(granted), string.format('%.17g', wait)}
"""


class RedisBuckets:
    """The buckets as Redis hashes `beacon:rate:<key>`, changed by one Lua script per take."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._script = self._client.register_script(_TAKE_SCRIPT)

    def take(self, limits: list[Limit], demands: Sequence[tuple[int, ...]], now: float) -> Grant:
        arguments: list[str | float] = [repr(now)]
        for limit in limits:
            arguments += [repr(limit.per_second), repr(limit.capacity)]
        # Lua counts from 1.
        arguments.append(" ".join(".".join(str(index + 1) for index in demand) for demand in demands))
        import redis

        try:
            flags, wait = self._script(keys=[REDIS_KEY_PREFIX + limit.key for limit in limits], args=arguments)
        except redis.RedisError as error:
            raise RateLimitsUnavailable(f"The send rate limits cannot be read from Redis: {error}") from error
        flags = flags.decode() if isinstance(flags, bytes) else flags
        wait = float(wait.decode() if isinstance(wait, bytes) else wait)
        return Grant([flag == "1" for flag in flags], wait if math.isfinite(wait) else 0.0)


_redis_buckets: dict[str, RedisBuckets] = {}
_redis_buckets_lock = threading.Lock()


def rate_buckets() -> RedisBuckets | DatabaseBuckets:
    """The buckets every worker of this installation shares: Redis with `REDIS_URL`, else the database."""
    url = settings.REDIS_URL
    if not url:
        return DatabaseBuckets()
    with _redis_buckets_lock:
        if url not in _redis_buckets:
            _redis_buckets[url] = RedisBuckets(url)
        return _redis_buckets[url]


def buckets_take(*, delivery_id: int, max_per_hour: int | None, emails: Sequence[str], now: float) -> Grant:
    """Which of a batch's messages (their addresses, in order) may be handed over now: one call to the
    shared buckets for the whole batch, none when no limit applies to it."""
    if not max_per_hour and not settings.BEACON_DOMAIN_RATES:
        return Grant([True] * len(emails))
    limits, demands = send_limits(delivery_id=delivery_id, max_per_hour=max_per_hour, emails=emails)
    if not limits:
        return Grant([True] * len(emails))
    unlimited = [not demand for demand in demands]
    limited = [demand for demand in demands if demand]
    grant = rate_buckets().take(limits, limited, now)
    answers = iter(grant.granted)
    return Grant([True if free else next(answers) for free in unlimited], grant.wait_seconds)
