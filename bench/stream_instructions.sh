#!/usr/bin/env bash
# Instructions the gateway executes per forwarded token of a slow stream (user space, counted by
# valgrind's callgrind, so the figure holds on a busy machine where tokens per CPU-second do not: a
# starved gateway reads and writes several tokens at once). The fake upstream of streams.sh sends a
# token every INTERVAL seconds; CONCURRENCY streams at a time, ROUNDS times after one round of warm-up.
# Usage: bash bench/stream_instructions.sh     (CONCURRENCY=5 ROUNDS=3 TOKENS=200 INTERVAL=0.02 LOOP=uvloop)
#        DIALECT=responses bash bench/stream_instructions.sh   # a Responses client, translated (or messages)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CONCURRENCY="${CONCURRENCY:-5}"
ROUNDS="${ROUNDS:-3}"
TOKENS="${TOKENS:-200}"
INTERVAL="${INTERVAL:-0.02}"
LOOP="${LOOP:-uvloop}"
DIALECT="${DIALECT:-chat}"
UP_PORT="${UP_PORT:-18193}"
GW_PORT="${GW_PORT:-18192}"
command -v valgrind >/dev/null || { echo "stream_instructions: needs valgrind" >&2; exit 2; }
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null
    if [[ -n "${KEEP:-}" ]]; then mkdir -p "$HERE/results" && cp "$WORK"/cg.* "$HERE/results/" 2>/dev/null; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$PYTHON" "$HERE/streams.py" upstream --port "$UP_PORT" --ttft 0.05 --interval "$INTERVAL" --tokens "$TOKENS" &
PIDS+=($!)
cat > "$WORK/gateway.yaml" <<YAML
server: {host: 127.0.0.1, port: $GW_PORT}
auth: {required: false}
logging: {access_log: false, level: warning}
providers: {up: {type: openai, base_url: "http://127.0.0.1:$UP_PORT/v1", api_key: bench}}
models:
  m: {deployments: [{provider: up, model: m}]}
YAML
(cd "$WORK" && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.%p" \
    "$PYTHON" -m gateway serve --config "$WORK/gateway.yaml" --loop "$LOOP" >"$WORK/gateway.log" 2>&1) &
GW=$!
PIDS+=($GW)
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null && break
    sleep 0.2
done
"$PYTHON" "$HERE/streams.py" count --port "$GW_PORT" --pid "$GW" --out-dir "$WORK" \
    --concurrency "$CONCURRENCY" --rounds "$ROUNDS" --dialect "$DIALECT" || { tail -20 "$WORK/gateway.log" >&2; exit 1; }
