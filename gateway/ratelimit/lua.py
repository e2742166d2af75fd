"""The limiter as one Lua script (one SHA, so recovering from NOSCRIPT in the reserve path also
restores the settle path).

Per scope four keys: `log` (sorted set: one member `rid:tokens` per admitted request, scored by its
admission time in ms), `tok` (the running sum of the tokens in `log`), `lease` (sorted set of
concurrency leases scored by their expiry) and `day` (hash with the UTC day's `r` requests and `t`
tokens). The sliding window is exact: expired members are removed (and their tokens subtracted)
before each check, amortised O(1) per request.

ARGV: mode, now_ms, rid, tokens, window_ms, lease_ms, day_left_ms, n_scopes, actual, release,
then per scope rpm, tpm, max_parallel, rpd, tpd (0 = no limit).

reserve → {1, per scope: requests, tokens, oldest_ms, leases, day_requests, day_tokens}
        or {0, scope_index (1-based), limit_name, retry_after_ms (-1: never fits)}
settle  → 1
"""

SCRIPT = r"""
local mode = ARGV[1]
local now = tonumber(ARGV[2])
local rid = ARGV[3]
local cost = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local lease_ms = tonumber(ARGV[6])
local day_left = tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local actual = tonumber(ARGV[9])
local release = ARGV[10] == '1'

local function lim(i, j) return tonumber(ARGV[10 + (i - 1) * 5 + j]) end

local function member_cost(m) return tonumber(string.match(m, ':(%d+)$')) or 0 end

if mode == 'settle' then
  for i = 1, n do
    local k = (i - 1) * 4
    local rpm, tpm, conc, tpd = lim(i, 1), lim(i, 2), lim(i, 3), lim(i, 5)
    if tpm > 0 and actual ~= cost then
      local old = rid .. ':' .. cost
      local score = redis.call('ZSCORE', KEYS[k + 1], old)
      if score then
        redis.call('ZREM', KEYS[k + 1], old)
        redis.call('ZADD', KEYS[k + 1], score, rid .. ':' .. actual)
        redis.call('INCRBY', KEYS[k + 2], actual - cost)
      end
    end
    if conc > 0 and release then redis.call('ZREM', KEYS[k + 3], rid) end
    if tpd > 0 and actual ~= cost and redis.call('EXISTS', KEYS[k + 4]) == 1 then
      redis.call('HINCRBY', KEYS[k + 4], 't', actual - cost)
    end
  end
  return 1
end

local state = {}
for i = 1, n do
  local k = (i - 1) * 4
  local rpm, tpm, conc, rpd, tpd = lim(i, 1), lim(i, 2), lim(i, 3), lim(i, 4), lim(i, 5)
  local s = {0, 0, now, 0, 0, 0}
  if rpm > 0 or tpm > 0 then
    local log, tok = KEYS[k + 1], KEYS[k + 2]
    local expired = redis.call('ZRANGEBYSCORE', log, '-inf', now - window)
    if #expired > 0 then
      local freed = 0
      for _, m in ipairs(expired) do freed = freed + member_cost(m) end
      redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
      redis.call('DECRBY', tok, freed)
    end
    local count = redis.call('ZCARD', log)
    local total = tonumber(redis.call('GET', tok) or '0')
    if rpm > 0 and count + 1 > rpm then
      local nth = redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')
      return {0, i, 'requests', tonumber(nth[2]) + window - now}
    end
    if tpm > 0 and total + cost > tpm then
      if cost > tpm then return {0, i, 'tokens', -1} end
      -- When enough tokens leave the window; the scan is bounded (128: a refusal must stay cheap on a
      -- busy scope), past it the answer is a lower bound.
      local entries = redis.call('ZRANGE', log, 0, 127, 'WITHSCORES')
      local left = total
      for j = 1, #entries, 2 do
        left = left - member_cost(entries[j])
        if left + cost <= tpm or j + 1 == #entries then
          return {0, i, 'tokens', tonumber(entries[j + 1]) + window - now}
        end
      end
      return {0, i, 'tokens', window}
    end
    s[1], s[2] = count, total
    if count > 0 then s[3] = tonumber(redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')[2]) end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
    local leases = redis.call('ZCARD', KEYS[k + 3])
    if leases >= conc then
      local first = redis.call('ZRANGE', KEYS[k + 3], 0, 0, 'WITHSCORES')
      return {0, i, 'concurrency', math.min(1000, tonumber(first[2]) - now)}
    end
    s[4] = leases
  end
  if rpd > 0 or tpd > 0 then
    local day = redis.call('HMGET', KEYS[k + 4], 'r', 't')
    local dr, dt = tonumber(day[1] or '0'), tonumber(day[2] or '0')
    if rpd > 0 and dr + 1 > rpd then return {0, i, 'requests_per_day', day_left} end
    if tpd > 0 and dt + cost > tpd then
      if cost > tpd then return {0, i, 'tokens_per_day', -1} end
      return {0, i, 'tokens_per_day', day_left}
    end
    s[5], s[6] = dr, dt
  end
  state[i] = s
end

local out = {1}
for i = 1, n do
  local k = (i - 1) * 4
  local rpm, tpm, conc, rpd, tpd = lim(i, 1), lim(i, 2), lim(i, 3), lim(i, 4), lim(i, 5)
  local s = state[i]
  if rpm > 0 or tpm > 0 then
    redis.call('ZADD', KEYS[k + 1], now, rid .. ':' .. cost)
    redis.call('INCRBY', KEYS[k + 2], cost)
    redis.call('PEXPIRE', KEYS[k + 1], window + 1000)
    redis.call('PEXPIRE', KEYS[k + 2], window + 1000)
    s[1], s[2] = s[1] + 1, s[2] + cost
  end
  if conc > 0 then
    redis.call('ZADD', KEYS[k + 3], now + lease_ms, rid)
    redis.call('PEXPIRE', KEYS[k + 3], lease_ms + 1000)
    s[4] = s[4] + 1
  end
  if rpd > 0 or tpd > 0 then
    redis.call('HINCRBY', KEYS[k + 4], 'r', 1)
    redis.call('HINCRBY', KEYS[k + 4], 't', cost)
    redis.call('PEXPIRE', KEYS[k + 4], day_left + 3600000)
    s[5], s[6] = s[5] + 1, s[6] + cost
  end
  for j = 1, 6 do out[#out + 1] = s[j] end
end
return out
"""
