"""The limiter's data types and its in-process implementation (the same semantics as the Lua
script in `lua.py`, used by `MemoryStore`).

A request is checked against several scopes at once (key, team, alias; a deployment on its own
when the router picks it). Each scope carries up to five limits: requests and tokens per sliding
minute, concurrent requests (leases with a TTL), and requests and tokens per UTC day. A reservation
is all-or-nothing: when any limit of any scope refuses, nothing is consumed anywhere."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

WINDOW_MS = 60_000
DAY_MS = 86_400_000
# How many of a scope's oldest requests a TPM refusal looks at to compute its Retry-After.
RETRY_SCAN = 128

# Limit names as the script reports them; the index into ScopeLimits' tuple form.
LIMIT_NAMES = ("requests", "tokens", "concurrency", "requests_per_day", "tokens_per_day")


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """One scope and its limits; 0 means no limit. `id` is e.g. `k:<key digest>`, `t:search`,
    `a:gpt-4o`, `d:openai/gpt-4o`; `label` is what errors and logs show."""

    id: str
    label: str
    rpm: int = 0
    tpm: int = 0
    max_parallel: int = 0
    rpd: int = 0
    tpd: int = 0

    @property
    def values(self) -> tuple[int, int, int, int, int]:
        return self.rpm, self.tpm, self.max_parallel, self.rpd, self.tpd

    @property
    def counts_tokens(self) -> bool:
        return self.tpm > 0 or self.tpd > 0


@dataclass(frozen=True, slots=True)
class ScopeState:
    """A scope right after an admitted reservation (including it)."""

    requests: int
    tokens: int
    oldest_ms: int
    leases: int
    day_requests: int
    day_tokens: int


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int  # which scope (0-based)
    limit: str  # one of LIMIT_NAMES
    retry_after_ms: int  # -1: this request can never fit (it asks for more than the limit)


@dataclass(frozen=True, slots=True)
class Admitted:
    states: tuple[ScopeState, ...]


Decision = Admitted | Refusal


def decode(raw: list[object]) -> Decision:
    """The script's reply → a Decision."""
    if int(raw[0]) == 0:  # type: ignore[call-overload]
        name = raw[2].decode() if isinstance(raw[2], bytes) else str(raw[2])
        return Refusal(int(raw[1]) - 1, name, int(raw[3]))  # type: ignore[call-overload]
    values = [int(v) for v in raw[1:]]  # type: ignore[call-overload]
    return Admitted(tuple(ScopeState(*values[i:i + 6]) for i in range(0, len(values), 6)))


def day_of(now_ms: int) -> int:
    return now_ms // DAY_MS


def day_left_ms(now_ms: int) -> int:
    return DAY_MS - now_ms % DAY_MS


# ---------------------------------------------------------------------------------------------
# In-process implementation
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Scope:
    log: list[tuple[int, str, int]] = field(default_factory=list)  # (score_ms, rid, tokens), sorted
    tokens: int = 0
    leases: dict[str, int] = field(default_factory=dict)  # rid → expiry ms
    days: dict[int, list[int]] = field(default_factory=dict)  # day → [requests, tokens]

    def trim(self, now: int, window: int) -> None:
        cut = 0
        log = self.log
        while cut < len(log) and log[cut][0] <= now - window:
            self.tokens -= log[cut][2]
            cut += 1
        if cut:
            del log[:cut]

    def drop_leases(self, now: int) -> None:
        if self.leases:
            for rid in [r for r, expiry in self.leases.items() if expiry <= now]:
                del self.leases[rid]


class MemoryLimiter:
    """Exactly the Lua script's behaviour, on dicts (single process; atomic because it never awaits)."""

    def __init__(self) -> None:
        self.scopes: dict[str, _Scope] = {}

    def reserve(self, scopes: tuple[ScopeLimits, ...], rid: str, now_ms: int, tokens: int,
                lease_ms: int) -> Decision:
        states: list[tuple[int, int, int, int, int, int]] = []
        day = day_of(now_ms)
        for i, limits in enumerate(scopes):
            s = self.scopes.get(limits.id)
            if s is None:
                s = self.scopes[limits.id] = _Scope()
            st = [0, 0, now_ms, 0, 0, 0]
            if limits.rpm or limits.tpm:
                s.trim(now_ms, WINDOW_MS)
                count = len(s.log)
                if limits.rpm and count + 1 > limits.rpm:
                    return Refusal(i, "requests", s.log[count - limits.rpm][0] + WINDOW_MS - now_ms)
                if limits.tpm and s.tokens + tokens > limits.tpm:
                    if tokens > limits.tpm:
                        return Refusal(i, "tokens", -1)
                    left = s.tokens
                    scan = s.log[:RETRY_SCAN]  # bounded, as in the script: past it a lower bound
                    for j, (score, _, cost) in enumerate(scan):
                        left -= cost
                        if left + tokens <= limits.tpm or j == len(scan) - 1:
                            return Refusal(i, "tokens", score + WINDOW_MS - now_ms)
                    return Refusal(i, "tokens", WINDOW_MS)
                st[0], st[1] = count, s.tokens
                if count:
                    st[2] = s.log[0][0]
            if limits.max_parallel:
                s.drop_leases(now_ms)
                if len(s.leases) >= limits.max_parallel:
                    first = min(s.leases.values())
                    return Refusal(i, "concurrency", min(1000, first - now_ms))
                st[3] = len(s.leases)
            if limits.rpd or limits.tpd:
                dr, dt = s.days.get(day, (0, 0))
                if limits.rpd and dr + 1 > limits.rpd:
                    return Refusal(i, "requests_per_day", day_left_ms(now_ms))
                if limits.tpd and dt + tokens > limits.tpd:
                    return Refusal(i, "tokens_per_day", -1 if tokens > limits.tpd else day_left_ms(now_ms))
                st[4], st[5] = dr, dt
            states.append((st[0], st[1], st[2], st[3], st[4], st[5]))
        out: list[ScopeState] = []
        for limits, state in zip(scopes, states, strict=True):
            s = self.scopes[limits.id]
            r, t, oldest, leases, dr, dt = state
            if limits.rpm or limits.tpm:
                bisect.insort(s.log, (now_ms, rid, tokens))
                s.tokens += tokens
                r, t = r + 1, t + tokens
            if limits.max_parallel:
                s.leases[rid] = now_ms + lease_ms
                leases += 1
            if limits.rpd or limits.tpd:
                counters = s.days.setdefault(day, [0, 0])
                for old in [d for d in s.days if d < day - 1]:
                    del s.days[old]
                counters[0] += 1
                counters[1] += tokens
                dr, dt = dr + 1, dt + tokens
            out.append(ScopeState(r, t, oldest, leases, dr, dt))
        return Admitted(tuple(out))

    def settle(self, scopes: tuple[ScopeLimits, ...], rid: str, at_ms: int, reserved: int, actual: int,
               release: bool) -> None:
        day = day_of(at_ms)
        for limits in scopes:
            s = self.scopes.get(limits.id)
            if s is None:
                continue
            if limits.tpm and actual != reserved:
                j = bisect.bisect_left(s.log, (at_ms, rid, reserved))
                if j < len(s.log) and s.log[j] == (at_ms, rid, reserved):
                    s.log[j] = (at_ms, rid, actual)
                    s.tokens += actual - reserved
            if limits.max_parallel and release:
                s.leases.pop(rid, None)
            if limits.tpd and actual != reserved and day in s.days:
                s.days[day][1] += actual - reserved
