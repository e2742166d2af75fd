"""Routing state in the store: per-deployment latency statistics and circuit-breaker state.

One hash per deployment (`prefix:{routing}:rt:<deployment>`). Three operations:

- `routing_observe(observations)` — a settle-batch op: every attempt of one request folded in with one
  EVALSHA (peak-EWMA latency, TTFT mean/variance, error rate, failure window, cooldown transitions).
- `routing_read(ids)` — direct, one round trip: the current fields of each deployment.
- `routing_claim_probe(id, now, ttl)` — direct, one round trip: take the single half-open probe.

`apply_observation` is the reference semantics (the MemoryStore runs it; the Lua script mirrors it
line by line; one contract suite checks both). Times are the caller's clock (seconds), so tests can
drive cooldowns with a fake clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gateway.store.scripts import ScriptOps

# An observation on the wire: (deployment id, ok, latency per output token, duration, ttft,
# retry_after, now, tau, failures, window, base, max, failure_rate, min_calls); -1 marks "no sample".
Observation = tuple[str, int, float, float, float, float, float, float, int, float, float, float, float, int]

FIELDS = ("lat", "lat_t", "lat_n", "dur_m", "dur_v", "ttft", "ttft_t", "ttft_n", "ttft_m", "ttft_v",
          "err", "n", "fails", "fails_t", "open_until", "level", "probe_until", "calls", "streak", "streak_t")
# Smoothing of the plain (count-based) averages: TTFT/duration mean and variance, error rate.
ALPHA = 0.2
# The `ok` of an observation that carries no verdict: a half-open probe that ended without saying
# anything about the deployment (a 4xx that was the request's fault, a cancelled attempt) only
# frees the probe slot, so the next request may probe at once.
RELEASE_PROBE = 2


def _peak(h: dict[str, float], name: str, sample: float, now: float, tau: float) -> None:
    """Peak-sensitive EWMA: a slower sample is taken at once, faster ones blend in with a weight
    that decays with the time since the last sample (so a long-unsampled value forgets quickly)."""
    if h[name + "_n"] == 0 or sample > h[name]:
        h[name] = sample
    else:
        w = math.exp(-max(0.0, now - h[name + "_t"]) / tau)
        h[name] = h[name] * w + sample * (1 - w)
    h[name + "_t"] = now
    h[name + "_n"] += 1


def _meanvar(h: dict[str, float], m: str, v: str, first: bool, x: float) -> None:
    if first:
        h[m], h[v] = x, 0.0
        return
    diff = x - h[m]
    h[m] += ALPHA * diff
    h[v] = (1 - ALPHA) * (h[v] + ALPHA * diff * diff)


def _count(h: dict[str, float], ok: int, now: float, window: float) -> None:
    """The closed circuit's counters: calls and failures in the current window (restarted once it is
    `window` old), and the run of failures in a row (each within `window` of the one before)."""
    if h["fails_t"] == 0 or now - h["fails_t"] > window:
        h["calls"], h["fails"], h["fails_t"] = 0.0, 0.0, now
    h["calls"] += 1
    if ok:
        h["streak"] = 0.0
        return
    h["fails"] += 1
    h["streak"] = 1.0 if h["streak_t"] == 0 or now - h["streak_t"] > window else h["streak"] + 1
    h["streak_t"] = now


def _reset_counts(h: dict[str, float]) -> None:
    h["calls"] = h["fails"] = h["fails_t"] = h["streak"] = h["streak_t"] = 0.0


def apply_observation(h: dict[str, float], o: Observation) -> None:
    _, ok, lat, dur, ttft, retry_after, now, tau, fail_n, window, base, cap, rate, min_calls = o
    if ok == RELEASE_PROBE:
        if 0 < h["open_until"] <= now:
            h["probe_until"] = 0.0
        return
    if lat >= 0:
        _meanvar(h, "dur_m", "dur_v", h["lat_n"] == 0, dur)
        _peak(h, "lat", lat, now, tau)
    if ttft >= 0:
        _meanvar(h, "ttft_m", "ttft_v", h["ttft_n"] == 0, ttft)
        _peak(h, "ttft", ttft, now, tau)
    h["err"] = (1.0 - ok) if h["n"] == 0 else h["err"] + ALPHA * ((1.0 - ok) - h["err"])
    h["n"] += 1
    open_until = h["open_until"]
    if ok:
        if open_until > 0 and now >= open_until:  # the probe (or a late success) closes the circuit
            h["open_until"] = h["level"] = h["probe_until"] = 0.0
            _reset_counts(h)
        elif open_until == 0:
            _count(h, ok, now, window)
        return
    if open_until > 0 and now >= open_until:  # half-open and failed again: reopen, longer
        h["level"] += 1
        h["open_until"] = now + min(cap, base * 2 ** (h["level"] - 1))
        h["probe_until"] = 0.0
        _reset_counts(h)
    elif open_until > 0:  # already open (a failure that was in flight)
        if retry_after > 0:
            h["open_until"] = max(open_until, now + min(retry_after, cap))
    elif retry_after > 0:  # 429 + Retry-After: open for as long as the provider asks
        h["open_until"] = now + min(retry_after, cap)
        _reset_counts(h)
    else:
        _count(h, ok, now, window)
        # A run of failures opens at once at any traffic; scattered failures open only when they are
        # a large enough share of enough calls (rare errors are left to retries).
        if h["streak"] >= fail_n or (h["calls"] >= min_calls and h["fails"] >= rate * h["calls"]):
            h["level"] += 1
            h["open_until"] = now + min(cap, base * 2 ** (h["level"] - 1))
            _reset_counts(h)


def claim_probe(h: dict[str, float], now: float, ttl: float) -> bool:
    """True when the caller may send: closed, or half-open and the probe was free (now taken)."""
    open_until = h["open_until"]
    if open_until == 0:
        return True
    if now < open_until or h["probe_until"] > now:
        return False
    h["probe_until"] = now + ttl
    return True


def empty() -> dict[str, float]:
    return dict.fromkeys(FIELDS, 0.0)


class MemoryRoutingOps:
    """Mixed into MemoryStore."""

    _routing: dict[str, dict[str, float]]

    def _rt(self, dep: str) -> dict[str, float]:
        try:
            return self._routing[dep]
        except AttributeError:
            self._routing = {}
        except KeyError:
            pass
        h = self._routing[dep] = empty()
        return h

    def op_routing_observe(self, observations: Sequence[Observation]) -> None:
        for o in observations:
            apply_observation(self._rt(o[0]), o)

    async def routing_read(self, ids: Sequence[str]) -> dict[str, dict[str, float]]:
        return {dep: dict(self._rt(dep)) for dep in ids}

    async def routing_claim_probe(self, dep: str, now: float, ttl: float) -> bool:
        return claim_probe(self._rt(dep), now, ttl)


_LUA_OBSERVE = """
local function num(v) if v then return tonumber(v) end return 0 end
local fields = {FIELDS}
local per = 13
for k = 1, #KEYS do
  local a = (k - 1) * per
  local ok, lat, dur, ttft = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), tonumber(ARGV[a+4])
  local ra, now, tau = tonumber(ARGV[a+5]), tonumber(ARGV[a+6]), tonumber(ARGV[a+7])
  local fail_n, window, base, cap = tonumber(ARGV[a+8]), tonumber(ARGV[a+9]), tonumber(ARGV[a+10]), tonumber(ARGV[a+11])
  local rate, min_calls = tonumber(ARGV[a+12]), tonumber(ARGV[a+13])
  if ok == RELEASE_PROBE then
    local ou = tonumber(redis.call('HGET', KEYS[k], 'open_until') or '0')
    if ou > 0 and ou <= now then redis.call('HSET', KEYS[k], 'probe_until', '0') end
  else
  local raw = redis.call('HMGET', KEYS[k], unpack(fields))
  local h = {}
  for i, f in ipairs(fields) do h[f] = num(raw[i]) end
  local function meanvar(m, v, first, x)
    if first then h[m] = x; h[v] = 0; return end
    local diff = x - h[m]
    h[m] = h[m] + ALPHA * diff
    h[v] = (1 - ALPHA) * (h[v] + ALPHA * diff * diff)
  end
  local function peak(name, sample)
    if h[name .. '_n'] == 0 or sample > h[name] then
      h[name] = sample
    else
      local dt = now - h[name .. '_t']
      if dt < 0 then dt = 0 end
      local w = math.exp(-dt / tau)
      h[name] = h[name] * w + sample * (1 - w)
    end
    h[name .. '_t'] = now
    h[name .. '_n'] = h[name .. '_n'] + 1
  end
  if lat >= 0 then meanvar('dur_m', 'dur_v', h['lat_n'] == 0, dur); peak('lat', lat) end
  if ttft >= 0 then meanvar('ttft_m', 'ttft_v', h['ttft_n'] == 0, ttft); peak('ttft', ttft) end
  if h['n'] == 0 then h['err'] = 1 - ok else h['err'] = h['err'] + ALPHA * ((1 - ok) - h['err']) end
  h['n'] = h['n'] + 1
  local function count()
    if h['fails_t'] == 0 or now - h['fails_t'] > window then h['calls'] = 0; h['fails'] = 0; h['fails_t'] = now end
    h['calls'] = h['calls'] + 1
    if ok == 1 then h['streak'] = 0; return end
    h['fails'] = h['fails'] + 1
    if h['streak_t'] == 0 or now - h['streak_t'] > window then h['streak'] = 1 else h['streak'] = h['streak'] + 1 end
    h['streak_t'] = now
  end
  local function reset_counts()
    h['calls'] = 0; h['fails'] = 0; h['fails_t'] = 0; h['streak'] = 0; h['streak_t'] = 0
  end
  local ou = h['open_until']
  if ok == 1 then
    if ou > 0 and now >= ou then h['open_until'] = 0; h['level'] = 0; h['probe_until'] = 0; reset_counts()
    elseif ou == 0 then count() end
  elseif ou > 0 and now >= ou then
    h['level'] = h['level'] + 1
    h['open_until'] = now + math.min(cap, base * 2 ^ (h['level'] - 1))
    h['probe_until'] = 0; reset_counts()
  elseif ou > 0 then
    if ra > 0 then h['open_until'] = math.max(ou, now + math.min(ra, cap)) end
  elseif ra > 0 then
    h['open_until'] = now + math.min(ra, cap); reset_counts()
  else
    count()
    if h['streak'] >= fail_n or (h['calls'] >= min_calls and h['fails'] >= rate * h['calls']) then
      h['level'] = h['level'] + 1
      h['open_until'] = now + math.min(cap, base * 2 ^ (h['level'] - 1))
      reset_counts()
    end
  end
  local out = {}
  for _, f in ipairs(fields) do out[#out+1] = f; out[#out+1] = string.format('%.17g', h[f]) end
  redis.call('HSET', KEYS[k], unpack(out))
  end
end
return #KEYS
""".replace("FIELDS", ", ".join(f"'{f}'" for f in FIELDS)).replace("ALPHA", repr(ALPHA)).replace(
    "RELEASE_PROBE", str(RELEASE_PROBE))

_LUA_PROBE = """
local raw = redis.call('HMGET', KEYS[1], 'open_until', 'probe_until')
local ou, pu = tonumber(raw[1] or '0'), tonumber(raw[2] or '0')
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
if ou == 0 then return 1 end
if now < ou or pu > now then return 0 end
redis.call('HSET', KEYS[1], 'probe_until', string.format('%.17g', now + ttl))
return 1
"""


class RedisRoutingOps(ScriptOps):
    """Mixed into RedisStore (which provides `client`, `key`, `timeout` and the error mapping)."""

    client: Any
    timeout: float

    def _routing_scripts(self) -> tuple[Any, Any]:
        scripts: tuple[Any, Any] | None = getattr(self, "_rt_scripts", None)
        if scripts is None:
            scripts = (self.client.register_script(_LUA_OBSERVE), self.client.register_script(_LUA_PROBE))
            self._rt_scripts = scripts
        return scripts

    def _rt_key(self, dep: str) -> str:
        return self.key("rt", dep, tag="routing")

    def queue_routing_observe(self, pipe: Any, observations: Sequence[Observation]) -> None:
        keys = [self._rt_key(o[0]) for o in observations]
        args: list[float] = []
        for o in observations:
            args.extend(o[1:])
        self.queue_script(pipe, _LUA_OBSERVE, len(keys), *keys, *args)

    async def routing_read(self, ids: Sequence[str]) -> dict[str, dict[str, float]]:
        pipe = self.client.pipeline(transaction=False)
        for dep in ids:
            pipe.hmget(self._rt_key(dep), FIELDS)
        rows = await self._rt_call(pipe.execute())
        return {dep: {f: float(v) if v is not None else 0.0 for f, v in zip(FIELDS, row, strict=True)}
                for dep, row in zip(ids, rows, strict=True)}

    async def routing_claim_probe(self, dep: str, now: float, ttl: float) -> bool:
        script = self._routing_scripts()[1]
        return bool(await self._rt_call(script(keys=[self._rt_key(dep)], args=[now, ttl])))

    async def _rt_call(self, awaitable: Any) -> Any:
        import asyncio

        from redis.exceptions import RedisError

        from gateway.errors import StoreUnavailableError

        try:
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"The shared store did not answer: {type(exc).__name__}.") from None
