-- wrk script: POST an OpenAI chat request; settings come from the environment (run.sh sets them).
--   BENCH_MODEL   model alias in the body (default "bench")
--   BENCH_STREAM  "1" to send "stream": true
--   BENCH_KEY     gateway key sent as "Authorization: Bearer ..." (empty: no header)
--   BENCH_BODY    a file whose contents replace the generated JSON body
--   BENCH_OUT     where done() writes a JSON summary (rps, latency percentiles in µs, errors)

local model = os.getenv("BENCH_MODEL") or "bench"
local stream = os.getenv("BENCH_STREAM") == "1"
local key = os.getenv("BENCH_KEY") or ""
local body_file = os.getenv("BENCH_BODY") or ""
local out = os.getenv("BENCH_OUT") or ""

local body
if body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
else
  body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are a helpful assistant."},'
    .. '{"role":"user","content":"Say something short about benchmarks."}],"max_tokens":64,"temperature":0'
    .. (stream and ',"stream":true' or '') .. '}'
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

function done(summary, latency, requests)
  if out == "" then return end
  local e = summary.errors
  local f = assert(io.open(out, "w"))
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.2f,' ..
    '"latency_us":{"mean":%.2f,"stdev":%.2f,"min":%d,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes, summary.requests / (summary.duration / 1e6),
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.status, e.timeout))
  f:close()
end
