#!/usr/bin/env bash
# Streaming at scale: slow concurrent streams (200 ms to the first token, a token every 20 ms, 200
# tokens) at ramped concurrency, straight to the fake upstream (the baseline) and through the gateway
# (one worker, embedded store, pinned to its own core), in the same run, for each event loop.
# Usage: bash bench/streams.sh     (LEVELS="100 500 1000" HOLD=10 RAMP=2 LOOPS="uvloop asyncio granian" BURST=0)
# LOOPS: `gateway serve --loop` for each of uvloop and asyncio; granian: the app under granian instead.
# BURST=N: after each level's hold, N new streams at once on top of it (their TTFT reported apart).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
LEVELS="${LEVELS:-100 500 1000}"
HOLD="${HOLD:-10}"
RAMP="${RAMP:-2}"
LOOPS="${LOOPS:-uvloop asyncio}"
BURST="${BURST:-0}"
GATEWAY_CPU="${GATEWAY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
UP_PORT="${UP_PORT:-18191}"
GW_PORT="${GW_PORT:-18190}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

taskset -c "$LOAD_CPU" "$PYTHON" "$HERE/streams.py" upstream --port "$UP_PORT" &
PIDS+=($!)
cat > "$WORK/gateway.yaml" <<YAML
server: {host: 127.0.0.1, port: $GW_PORT, max_connections: 5000}
auth: {required: false}
logging: {access_log: false, level: warning}
providers: {up: {type: openai, base_url: "http://127.0.0.1:$UP_PORT/v1", api_key: bench, pool_size: 4096}}
models:
  m: {deployments: [{provider: up, model: m}]}
YAML
sleep 1
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# levels: $LEVELS; ramp ${RAMP}s; hold ${HOLD}s; 200 ms TTFT, 20 ms/token, 200 tokens"
# shellcheck disable=SC2086
taskset -c "$LOAD_CPU" "$PYTHON" "$HERE/streams.py" load --port "$UP_PORT" --levels $LEVELS --ramp "$RAMP" \
    --hold "$HOLD" --label direct --burst "$BURST"
for loop in $LOOPS; do
    if [[ "$loop" == granian ]]; then
        # The same app under granian (pip install granian): its one worker process, uvloop, is measured.
        (cd "$WORK" && GATEWAY_CONFIG="$WORK/gateway.yaml" exec taskset -c "$GATEWAY_CPU" "$PYTHON" -m granian \
            --interface asgi --factory --workers 1 --loop uvloop --http 1 --no-ws --backlog 4096 \
            --host 127.0.0.1 --port "$GW_PORT" --log-level warning gateway.app:create_app_from_env \
            >"$WORK/gateway-$loop.log" 2>&1) &
    else
        (cd "$WORK" && exec taskset -c "$GATEWAY_CPU" "$PYTHON" -m gateway serve --config "$WORK/gateway.yaml" \
            --loop "$loop" >"$WORK/gateway-$loop.log" 2>&1) &
    fi
    GW=$!
    PIDS+=($GW)
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null && break
        sleep 0.1
    done
    SERVER_PID="$(pgrep -P "$GW" | head -1 || true)"
    SERVER_PID="${SERVER_PID:-$GW}"
    # shellcheck disable=SC2086
    taskset -c "$LOAD_CPU" "$PYTHON" "$HERE/streams.py" load --port "$GW_PORT" --levels $LEVELS --ramp "$RAMP" \
        --hold "$HOLD" --pid "$SERVER_PID" --label "gateway-$loop" --burst "$BURST"
    kill "$GW"; wait "$GW" 2>/dev/null || true
done
