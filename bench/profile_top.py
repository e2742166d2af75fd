"""Summarise a py-spy raw (collapsed-stack) profile: the functions with the most self time and the
most inclusive time. Usage: python bench/profile_top.py bench/results/profile-json.txt [N]"""

from __future__ import annotations

import re
import sys
from collections import Counter

_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    # "func (path/file.py:123)" -> "func (path/file.py)": merge lines of one function
    return _LINE.sub(")", frame.strip())


def main() -> None:
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [frame_name(f) for f in stack.split(";")]
        self_time[frames[-1]] += k
        for f in set(frames):
            inclusive[f] += k
    print(f"{total} samples\n\nself time:")
    for name, k in self_time.most_common(n):
        print(f"  {100 * k / total:5.1f}%  {name}")
    print("\ninclusive time:")
    for name, k in inclusive.most_common(n):
        print(f"  {100 * k / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
