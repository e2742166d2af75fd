#!/usr/bin/env bash
# llm-gateway benchmark: the gateway against the same load sent straight to a local mock upstream.
# Usage: bash bench/run.sh            (settings via environment variables; see bench/README.md)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

DURATION="${DURATION:-10}"            # seconds per measured run
WARMUP="${WARMUP:-3}"                 # seconds of warm-up per mode (gateway and direct)
CONNECTIONS="${CONNECTIONS:-64}"      # connections for the throughput runs
THREADS="${THREADS:-1}"               # wrk threads for the throughput runs
MODES="${MODES:-json stream}"         # json = non-streaming, stream = stream:true
ALIAS="${ALIAS:-bench}"               # alias used for non-streaming gateway requests
STREAM_ALIAS="${STREAM_ALIAS:-bench-stream}"  # alias used for streaming gateway requests
EXTRA_CONFIG="${EXTRA_CONFIG:-}"      # YAML merged over the generated gateway config
BODY_FILE="${BODY_FILE:-}"            # request body file for non-streaming runs (default: generated)
STREAM_BODY_FILE="${STREAM_BODY_FILE:-}"  # request body file for streaming runs
GATEWAY_PORT="${GATEWAY_PORT:-18080}"
MOCK_PORT="${MOCK_PORT:-18081}"
PROXY_PORT="${PROXY_PORT:-18082}"
REFERENCE="${REFERENCE:-1}"           # 1: also measure nginx as a reverse proxy on the gateway's core
GATEWAY_CPU="${GATEWAY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
SOAK="${SOAK:-0}"                     # seconds of extra mixed load with RSS samples (0: off)
SOAK_INTERVAL="${SOAK_INTERVAL:-10}"
PROFILE="${PROFILE:-0}"               # 1: py-spy records the gateway during its throughput runs
SKIP_LATENCY="${SKIP_LATENCY:-0}"     # 1: throughput runs only
KEEP="${KEEP:-0}"                     # 1: keep the temp dir (configs, logs, raw wrk output)
RESULTS_DIR="${RESULTS_DIR:-$HERE/results}"
BENCH_KEY="sk-bench-$(date +%s)-local"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3 || true)"; fi
fi

# ---------------------------------------------------------------- preflight: say what is missing
missing=()
command -v wrk >/dev/null || missing+=("wrk (the load generator; Debian/Ubuntu: apt-get install wrk)")
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=("nginx (the mock upstream; Debian/Ubuntu: apt-get install nginx-light)")
command -v taskset >/dev/null || missing+=("taskset (CPU pinning; Debian/Ubuntu: util-linux)")
if [[ -z "$PYTHON" ]]; then
    missing+=("python3 (set PYTHON=... to a Python with the gateway's dependencies)")
elif ! (cd "$ROOT" && "$PYTHON" -c 'import gateway, uvicorn, uvloop, httptools, aiohttp, orjson, yaml') 2>/dev/null; then
    missing+=("the gateway's dependencies in $PYTHON (uvicorn, uvloop, httptools, aiohttp, orjson, pyyaml): pip install -e .")
fi
if [[ "$PROFILE" == 1 ]] && ! { command -v py-spy >/dev/null || [[ -x "$(dirname "$PYTHON")/py-spy" ]]; }; then
    missing+=("py-spy (for PROFILE=1): pip install py-spy")
fi
if ((${#missing[@]})); then
    echo "bench: cannot run; missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    echo "bench: this script installs nothing itself." >&2
    exit 2
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
PYSPY="$(command -v py-spy || echo "$(dirname "$PYTHON")/py-spy")"
ncpu="$(nproc)"
if ((ncpu < 2)); then
    echo "bench: WARNING: only $ncpu CPU; gateway and load share it, numbers are not comparable" >&2
    GATEWAY_CPU=0; LOAD_CPU=0
fi
for f in "$EXTRA_CONFIG" "$BODY_FILE" "$STREAM_BODY_FILE"; do
    [[ -z "$f" || -r "$f" ]] || { echo "bench: cannot read $f" >&2; exit 2; }
done
[[ -n "$EXTRA_CONFIG" ]] && EXTRA_CONFIG="$(cd "$(dirname "$EXTRA_CONFIG")" && pwd)/$(basename "$EXTRA_CONFIG")"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$GATEWAY_PORT" "$MOCK_PORT" $([[ "$REFERENCE" == 1 ]] && echo "$PROXY_PORT"); do
    port_free "$p" || { echo "bench: port $p is in use (set GATEWAY_PORT / MOCK_PORT)" >&2; exit 2; }
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench.XXXXXX")"
OUT="$TMP/out"; mkdir -p "$OUT"
NGINX_PID=""; GATEWAY_PID=""; PROXY_PID=""
cleanup() {
    set +e
    [[ -n "$GATEWAY_PID" ]] && kill "$GATEWAY_PID" 2>/dev/null && wait "$GATEWAY_PID" 2>/dev/null
    [[ -n "$PROXY_PID" ]] && kill -QUIT "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
    [[ -n "$NGINX_PID" ]] && kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    if [[ "$KEEP" == 1 ]]; then echo "bench: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {  # port, seconds, what
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        port_free "$1" || return 0
        sleep 0.1
    done
    echo "bench: $3 did not open port $1 in $2s" >&2
    return 1
}

meta() { "$PYTHON" "$HERE/bench.py" meta "$TMP/meta.json" "$@"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GATEWAY_PID/stat"; }  # utime + stime, in clock ticks
# Percent of all CPUs busy over one second (nothing of ours is running yet): other load skews results.
machine_busy() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    local busy=$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) ))
    local idle=$(( (b[4]+b[5]) - (a[4]+a[5]) ))
    echo $(( 100 * busy / (busy + idle > 0 ? busy + idle : 1) ))
}
rss() { "$PYTHON" "$HERE/bench.py" rss "$GATEWAY_PID"; }

BUSY_BEFORE="$(machine_busy)"
if ((BUSY_BEFORE > 10)); then
    echo "bench: WARNING: the machine is already ${BUSY_BEFORE}% busy before the benchmark starts;" \
         "rps and latency will be low and noisy (CPU us per request is the more robust figure)" >&2
fi

# ---------------------------------------------------------------- mock upstream (nginx)
sed -e "s#@TMP@#$TMP#g" -e "s#@PORT@#$MOCK_PORT#g" -e "s#@MOCK@#$HERE/mock#g" \
    "$HERE/nginx.conf.in" >"$TMP/nginx.conf"
taskset -c "$LOAD_CPU" "$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" &
NGINX_PID=$!
wait_port "$MOCK_PORT" 5 nginx || { cat "$TMP/nginx-error.log" >&2; exit 1; }
if [[ "$REFERENCE" == 1 ]]; then
    sed -e "s#@TMP@#$TMP#g" -e "s#@PORT@#$PROXY_PORT#g" -e "s#@MOCK_PORT@#$MOCK_PORT#g" \
        "$HERE/nginx-proxy.conf.in" >"$TMP/nginx-proxy.conf"
    taskset -c "$GATEWAY_CPU" "$NGINX" -p "$TMP" -c "$TMP/nginx-proxy.conf" -e "$TMP/proxy-error.log" &
    PROXY_PID=$!
    wait_port "$PROXY_PORT" 5 "nginx (reference proxy)" || { cat "$TMP/proxy-error.log" >&2; exit 1; }
fi

# ---------------------------------------------------------------- gateway
"$PYTHON" "$HERE/bench.py" config --out "$TMP/gateway.yaml" --mock-port "$MOCK_PORT" \
    --gateway-port "$GATEWAY_PORT" --key "$BENCH_KEY" --extra "$EXTRA_CONFIG"
(cd "$ROOT" && exec taskset -c "$GATEWAY_CPU" "$PYTHON" -m gateway serve --config "$TMP/gateway.yaml" \
    --port "$GATEWAY_PORT" --log-level warning) >"$TMP/gateway.log" 2>&1 &
GATEWAY_PID=$!
wait_port "$GATEWAY_PORT" 30 gateway || { cat "$TMP/gateway.log" >&2; exit 1; }

# One request of each kind through the gateway must succeed before anything is measured.
"$PYTHON" - "$GATEWAY_PORT" "$BENCH_KEY" "$ALIAS" "$STREAM_ALIAS" "$MODES" <<'PY' || { cat "$TMP/gateway.log" >&2; exit 1; }
import json, sys, urllib.request
port, key, alias, stream_alias, modes = sys.argv[1:]
for mode in modes.split():
    stream = mode == "stream"
    body = {"model": stream_alias if stream else alias, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            data = resp.read()
    except urllib.error.HTTPError as e:
        sys.exit(f"bench: smoke test ({mode}) failed: HTTP {e.code}: {e.read()[:300]!r}")
    if stream and not data.rstrip().endswith(b"data: [DONE]"):
        sys.exit(f"bench: smoke test (stream) did not end with [DONE]: {data[-200:]!r}")
PY

meta "duration=$DURATION" "warmup=$WARMUP" "connections=$CONNECTIONS" "threads=$THREADS" \
    "modes=$("$PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1].split()))' "$MODES")" \
    "alias=$ALIAS" "stream_alias=$STREAM_ALIAS" "extra_config=$EXTRA_CONFIG" \
    "gateway_cpu=$GATEWAY_CPU" "load_cpu=$LOAD_CPU" "reference=$([[ $REFERENCE == 1 ]] && echo true || echo false)" "skip_latency=$([[ $SKIP_LATENCY == 1 ]] && echo true || echo false)" "profile=$([[ $PROFILE == 1 ]] && echo true || echo false)" \
    "rss_kib.startup=$(rss)" "busy_before_pct=$BUSY_BEFORE" "clk_tck=$(getconf CLK_TCK)" \
    "loadavg_before=\"$(cut -d' ' -f1-3 /proc/loadavg)\""

# ---------------------------------------------------------------- load
# run_wrk NAME URL CONNECTIONS SECONDS MODEL STREAM BODY
run_wrk() {
    local name=$1 url=$2 conns=$3 secs=$4 model=$5 stream=$6 body=$7 threads=$THREADS
    ((threads > conns)) && threads=$conns
    BENCH_MODEL="$model" BENCH_STREAM="$stream" BENCH_KEY="$BENCH_KEY" BENCH_BODY="$body" \
    BENCH_OUT="$OUT/$name.json" \
        taskset -c "$LOAD_CPU" wrk -t "$threads" -c "$conns" -d "${secs}s" --timeout 10s --latency \
        -s "$HERE/post.lua" "$url" >"$OUT/$name.txt" 2>&1
}

profile_start() {  # name
    [[ "$PROFILE" == 1 ]] || return 0
    mkdir -p "$RESULTS_DIR"
    taskset -c "$LOAD_CPU" "$PYSPY" record --pid "$GATEWAY_PID" --rate 200 --format raw \
        --output "$RESULTS_DIR/profile-$1.txt" --nonblocking >"$OUT/pyspy-$1.log" 2>&1 &
    PYSPY_PID=$!
    sleep 1
}
profile_stop() {
    [[ "$PROFILE" == 1 ]] || return 0
    kill -INT "$PYSPY_PID" 2>/dev/null || true
    wait "$PYSPY_PID" 2>/dev/null || true
}

GW="http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions"
for mode in $MODES; do
    if [[ "$mode" == stream ]]; then
        model=$STREAM_ALIAS stream=1 body=$STREAM_BODY_FILE path=/sse/v1/chat/completions
    else
        model=$ALIAS stream=0 body=$BODY_FILE path=/json/v1/chat/completions
    fi
    direct="http://127.0.0.1:$MOCK_PORT$path" proxy="http://127.0.0.1:$PROXY_PORT$path"
    echo "bench: $mode: warm-up ${WARMUP}s" >&2
    if ((WARMUP > 0)); then
        run_wrk "$mode-warmup-gateway" "$GW" "$CONNECTIONS" "$WARMUP" "$model" "$stream" "$body"
        run_wrk "$mode-warmup-direct" "$direct" "$CONNECTIONS" "$WARMUP" "$model" "$stream" "$body"
    fi
    echo "bench: $mode: throughput at $CONNECTIONS connections, ${DURATION}s each (direct, proxy, gateway)" >&2
    run_wrk "$mode-direct-throughput" "$direct" "$CONNECTIONS" "$DURATION" "$model" "$stream" "$body"
    if [[ "$REFERENCE" == 1 ]]; then run_wrk "$mode-proxy-throughput" "$proxy" "$CONNECTIONS" "$DURATION" "$model" "$stream" "$body"; fi
    profile_start "$mode"
    ticks=$(cpu_ticks)
    run_wrk "$mode-gateway-throughput" "$GW" "$CONNECTIONS" "$DURATION" "$model" "$stream" "$body"
    meta "cpu_ticks.$mode=$(( $(cpu_ticks) - ticks ))"
    profile_stop
    if [[ "$SKIP_LATENCY" != 1 ]]; then
        echo "bench: $mode: latency at 1 connection, ${DURATION}s each (direct, proxy, gateway)" >&2
        run_wrk "$mode-direct-latency" "$direct" 1 "$DURATION" "$model" "$stream" "$body"
        if [[ "$REFERENCE" == 1 ]]; then run_wrk "$mode-proxy-latency" "$proxy" 1 "$DURATION" "$model" "$stream" "$body"; fi
        run_wrk "$mode-gateway-latency" "$GW" 1 "$DURATION" "$model" "$stream" "$body"
    fi
    meta "rss_kib.after_$mode=$(rss)"
done

# ---------------------------------------------------------------- optional soak: RSS must stay flat
if ((SOAK > 0)); then
    echo "bench: soak ${SOAK}s: mixed load at $CONNECTIONS connections, RSS every ${SOAK_INTERVAL}s" >&2
    half=$(( CONNECTIONS / 2 > 0 ? CONNECTIONS / 2 : 1 ))
    run_wrk soak-json "$GW" "$half" "$SOAK" "$ALIAS" 0 "$BODY_FILE" &
    soak_a=$!
    run_wrk soak-stream "$GW" "$half" "$SOAK" "$STREAM_ALIAS" 1 "$STREAM_BODY_FILE" &
    soak_b=$!
    "$PYTHON" "$HERE/bench.py" soak --pid "$GATEWAY_PID" --seconds "$SOAK" --interval "$SOAK_INTERVAL" \
        --out "$OUT/soak-samples.json" >&2
    wait "$soak_a" "$soak_b" || true
    meta "soak_seconds=$SOAK"
fi

meta "rss_kib.end=$(rss)" "loadavg_after=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
if grep -qE '"level":"(error|critical)"|Traceback' "$TMP/gateway.log"; then
    echo "bench: the gateway logged errors:" >&2
    tail -20 "$TMP/gateway.log" >&2
fi
"$PYTHON" "$HERE/bench.py" report --dir "$OUT" --meta "$TMP/meta.json" --results "$RESULTS_DIR"
