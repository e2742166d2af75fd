"""The client side of instructions.sh: sends requests one at a time over one keep-alive connection to
a gateway running under callgrind, and reads the instruction count of the measured ones.
Standard library only."""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

SYSTEM, USER = "You are a helpful assistant.", "Say something short about benchmarks."
# The same question in each client dialect: (path, body, the bytes a complete stream ends with).
DIALECTS = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "system", "content": SYSTEM},
                                                   {"role": "user", "content": USER}],
                                      "max_tokens": 64, "temperature": 0}, b"data: [DONE]\n\n"),
    "messages": ("/v1/messages", {"system": SYSTEM, "messages": [{"role": "user", "content": USER}],
                                  "max_tokens": 64, "temperature": 0}, b'{"type":"message_stop"}\n\n'),
    # store: false, as Codex sends it: the stored-conversation write is not part of this path.
    "responses": ("/v1/responses", {"instructions": SYSTEM, "input": USER, "max_output_tokens": 64,
                                    "temperature": 0, "store": False}, b"response.completed"),
}


def wait_ready(port: int, pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if not Path(f"/proc/{pid}").exists():
            sys.exit("instructions: the gateway exited")
        time.sleep(0.5)
    sys.exit(f"instructions: the gateway did not answer on port {port} in {seconds:.0f}s")


def send(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str],
         end: bytes | None) -> None:
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200 or (end is not None and end not in data[-4000:]):
        sys.exit(f"instructions: unexpected answer {response.status}: {data[:300]!r}")


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def total_instructions(out_dir: Path, pid: int) -> int:
    """The Ir total of the newest dump (callgrind writes `summary:` / `totals:` lines)."""
    dumps = sorted(out_dir.glob(f"cg.{pid}*"), key=lambda p: p.stat().st_mtime)
    for line in reversed(dumps[-1].read_text(errors="replace").splitlines()):
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    sys.exit(f"instructions: no totals in {dumps[-1]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warm", type=int, default=100)
    parser.add_argument("--alias", default="bench")
    parser.add_argument("--stream-alias", default="bench-stream")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--dialect", choices=sorted(DIALECTS), default="chat")
    parser.add_argument("modes", nargs="+", choices=["json", "stream"])
    args = parser.parse_args()
    wait_ready(args.port, args.pid, 180)
    callgrind(args.pid, "--instr=on")
    headers = {"content-type": "application/json", "authorization": f"Bearer {args.key}"}
    results = {}
    path, template, stream_end = DIALECTS[args.dialect]
    for mode in args.modes:
        stream = mode == "stream"
        body = json.dumps({"model": args.stream_alias if stream else args.alias, **template,
                           **({"stream": True} if stream else {})}).encode()
        end = stream_end if stream else None
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        for _ in range(args.warm):
            send(conn, path, body, headers, end)
        callgrind(args.pid, "--zero")
        for _ in range(args.requests):
            send(conn, path, body, headers, end)
        callgrind(args.pid, "--dump")
        conn.close()
        per_request = total_instructions(Path(args.out_dir), args.pid) / args.requests
        results[mode] = per_request
        print(f"{mode:7s} {per_request / 1000:9.1f} k instructions per request ({args.requests} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
