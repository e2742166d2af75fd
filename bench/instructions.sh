#!/usr/bin/env bash
# Instructions the gateway's process executes per request, counted by valgrind (callgrind): the same
# count for the same code whatever else the machine is doing, so a change of a few percent shows,
# where rps and CPU time on a shared VM move by 20% from one run to the next. User space only: what
# system calls cost in the kernel is not in it (count those with strace -c).
#
#   bash bench/instructions.sh            # json and stream, 400 requests each after 100 of warm-up
#   MODES=json REQUESTS=1000 bash bench/instructions.sh
#   EXTRA_CONFIG=bench/variants/limits.yaml ALIAS=bench-limited MODES=json bash bench/instructions.sh
#   DIALECT=messages ALIAS=bench-messages STREAM_ALIAS=bench-messages-stream bash bench/instructions.sh
#   DIALECT=responses ALIAS=bench-responses STREAM_ALIAS=bench-responses-stream bash bench/instructions.sh
#   DIALECT=messages bash bench/instructions.sh    # Messages translated to the Chat Completions mock
#   SERVER=granian bash bench/instructions.sh     # the same app under granian (pip install granian)
#   KEEP=1 MODES=json bash bench/instructions.sh && callgrind_annotate bench/results/cg.<pid>.1 | head -60
#
# Needs valgrind and nginx; same mock upstream and generated config as run.sh. The gateway runs about
# 50 times slower under valgrind, so requests are sent one at a time over one keep-alive connection.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-$([[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python3)}"
MODES="${MODES:-json stream}"
REQUESTS="${REQUESTS:-400}"
WARM="${WARM:-100}"
ALIAS="${ALIAS:-bench}"
STREAM_ALIAS="${STREAM_ALIAS:-bench-stream}"
DIALECT="${DIALECT:-chat}"             # the client's API: chat, messages or responses
EXTRA_CONFIG="${EXTRA_CONFIG:-}"
GATEWAY_PORT="${GATEWAY_PORT:-18090}"
MOCK_PORT="${MOCK_PORT:-18091}"
SERVER="${SERVER:-uvicorn}"            # granian: the app under granian (pip install granian) instead of `gateway serve`
KEEP="${KEEP:-}"                       # 1: keep the callgrind dumps in bench/results/ (callgrind_annotate)
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

for tool in valgrind callgrind_control "$NGINX"; do
    command -v "$tool" >/dev/null || { echo "instructions: needs $tool (Debian: valgrind, nginx-light)" >&2; exit 2; }
done
[[ -z "$EXTRA_CONFIG" ]] || EXTRA_CONFIG="$(cd "$(dirname "$EXTRA_CONFIG")" && pwd)/$(basename "$EXTRA_CONFIG")"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/gateway-instr.XXXXXX")"
NGINX_PID="" GATEWAY_PID=""
cleanup() {
    set +e
    [[ -n "$GATEWAY_PID" ]] && kill "$GATEWAY_PID" 2>/dev/null && wait "$GATEWAY_PID" 2>/dev/null
    [[ -n "$NGINX_PID" ]] && kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    if [[ -n "$KEEP" ]]; then mkdir -p "$HERE/results" && cp "$TMP"/cg.* "$HERE/results/" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

sed -e "s#@TMP@#$TMP#g" -e "s#@PORT@#$MOCK_PORT#g" -e "s#@MOCK@#$HERE/mock#g" "$HERE/nginx.conf.in" >"$TMP/nginx.conf"
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" &
NGINX_PID=$!
KEY="sk-bench-$RANDOM$RANDOM$RANDOM"
"$PYTHON" "$HERE/bench.py" config --out "$TMP/gateway.yaml" --mock-port "$MOCK_PORT" \
    --gateway-port "$GATEWAY_PORT" --key "$KEY" --extra "$EXTRA_CONFIG"
# Instrumentation starts off (a quicker start); counters are zeroed after the warm-up.
if [[ "$SERVER" == granian ]]; then
    # The same app factory `gateway serve --workers N` uses, in granian's one worker process (its Rust
    # HTTP server and the app's uvloop): that worker is the process counted.
    (cd "$ROOT" && GATEWAY_CONFIG="$TMP/gateway.yaml" GATEWAY_LOG_LEVEL=warning exec valgrind --tool=callgrind \
        --trace-children=yes --instr-atstart=no --callgrind-out-file="$TMP/cg.%p" \
        "$PYTHON" -m granian --interface asgi --factory --workers 1 --loop uvloop --http 1 --no-ws \
        --host 127.0.0.1 --port "$GATEWAY_PORT" --log-level warning gateway.app:create_app_from_env) \
        >"$TMP/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    for _ in $(seq 600); do
        WORKER_PID="$(pgrep -P "$GATEWAY_PID" | head -1 || true)"
        [[ -n "$WORKER_PID" ]] && break
        sleep 0.2
    done
    [[ -n "$WORKER_PID" ]] || { echo "instructions: granian started no worker" >&2; tail -20 "$TMP/gateway.log" >&2; exit 1; }
else
    (cd "$ROOT" && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/cg.%p" \
        "$PYTHON" -m gateway serve --config "$TMP/gateway.yaml" --log-level warning) >"$TMP/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    WORKER_PID=$GATEWAY_PID
fi

"$PYTHON" "$HERE/instructions.py" --port "$GATEWAY_PORT" --key "$KEY" --pid "$WORKER_PID" \
    --requests "$REQUESTS" --warm "$WARM" --alias "$ALIAS" --stream-alias "$STREAM_ALIAS" \
    --dialect "$DIALECT" --out-dir "$TMP" $MODES || { tail -20 "$TMP/gateway.log" >&2; exit 1; }
