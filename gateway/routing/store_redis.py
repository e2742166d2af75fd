"""Routing's state in Redis, mixed into RedisStore (the twins of store_memory.py), shared by every
replica.

Statistics: one hash per deployment (`prefix:{routing}:rt:<deployment>`), three operations:
- `routing_observe(observations)` — a settle-batch op: every attempt of one request folded in with one
  EVALSHA (peak-EWMA latency, TTFT mean/variance, error rate, failure window, cooldown transitions;
  the Lua below mirrors observations.apply_observation).
- `routing_read(ids)` — direct, one round trip: the current fields of each deployment.
- `routing_claim_probe(id, now, ttl)` — direct, one round trip: take the single half-open probe.

Session pins (sticky routing, sessions.py): which deployment served a client session last, so a
session keeps its provider's prompt cache warm wherever its next request lands.
- `session_pin(key, deployment, ttl)` — a settle-batch op: SET with an expiry.
- `session_lookup(key)` — direct, one round trip: the pinned deployment or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.routing.observations import ALPHA, FIELDS, RELEASE_PROBE, Observation
from gateway.store import Once
from gateway.store.scripts import CommandBatch, ScriptOps

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

    def _routing_scripts(self) -> tuple[Any, Any]:
        scripts: tuple[Any, Any] | None = getattr(self, "_rt_scripts", None)
        if scripts is None:
            scripts = (self.client.register_script(_LUA_OBSERVE), self.client.register_script(_LUA_PROBE))
            self._rt_scripts = scripts
        return scripts

    def _rt_key(self, dep: str) -> str:
        return self.key("rt", dep, tag="routing")

    def queue_routing_observe(self, pipe: CommandBatch, once: Once | None, observations: Sequence[Observation]) -> None:
        keys = [self._rt_key(o[0]) for o in observations]
        args: list[float] = []
        for o in observations:
            args.extend(o[1:])
        self.queue_script(pipe, _LUA_OBSERVE, len(keys), *keys, *args)

    async def routing_read(self, ids: Sequence[str]) -> dict[str, dict[str, float]]:
        pipe = self.client.pipeline(transaction=False)
        for dep in ids:
            pipe.hmget(self._rt_key(dep), FIELDS)
        rows = await self.call(pipe.execute())
        return {dep: {f: float(v) if v is not None else 0.0 for f, v in zip(FIELDS, row, strict=True)}
                for dep, row in zip(ids, rows, strict=True)}

    async def routing_claim_probe(self, dep: str, now: float, ttl: float) -> bool:
        script = self._routing_scripts()[1]
        return bool(await self.call(script(keys=[self._rt_key(dep)], args=[now, ttl])))


class RedisSessionOps(ScriptOps):
    """Mixed into RedisStore."""

    client: Any

    def _pin_key(self, key: str) -> str:
        return self.key("session", tag=key)

    def queue_session_pin(self, pipe: CommandBatch, once: Once | None, key: str, deployment: str, ttl: float) -> None:
        pipe.execute_command("SET", self._pin_key(key), deployment, "PX", max(1, int(ttl * 1000)))

    async def session_lookup(self, key: str) -> str | None:
        value = await self.call(self.client.get(self._pin_key(key)))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
