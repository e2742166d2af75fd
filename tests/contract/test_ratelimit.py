"""The limiter's contract, run against MemoryStore, RedisStore on fakeredis and on a real Redis.

Hypothesis drives streams of reservations, settlements and clock steps through the store and
through a naive reference model written here (lists scanned in full on every call); every decision
must match, which checks all-or-nothing across scopes (a refusal that consumed anything anywhere
would make later decisions diverge). Independent invariants are checked on the recorded history:
never more requests or tokens admitted in any 60s window than the limit, and once everything is
settled and the window has passed, every scope is back to zero."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ratelimit.core import DAY_MS, WINDOW_MS, Admitted, Refusal, ScopeLimits, day_left_ms
from gateway.ratelimit.store import LIMITS_SETTLE
from tests.contract.stores import StoreFactory

T0 = 1_700_000_000_000  # an arbitrary start, in ms
LEASE_MS = 30_000


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Plain behaviour
# ---------------------------------------------------------------------------------------------


async def test_rpm_window_slides(store_factory: StoreFactory) -> None:
    scope = (ScopeLimits("k:a", "key 'a'", rpm=3),)
    async with store_factory() as store:
        for i in range(3):
            decision = await store.rl_reserve(scope, f"r{i}", T0 + i * 1000, 0, LEASE_MS)
            assert isinstance(decision, Admitted)
            assert decision.states[0].requests == i + 1
            assert decision.states[0].oldest_ms == T0
        refused = await store.rl_reserve(scope, "r3", T0 + 5000, 0, LEASE_MS)
        assert refused == Refusal(0, "requests", WINDOW_MS - 5000)
        # The first request leaves the window exactly 60s after it was admitted.
        assert isinstance(await store.rl_reserve(scope, "r4", T0 + WINDOW_MS - 1, 0, LEASE_MS), Refusal)
        assert isinstance(await store.rl_reserve(scope, "r5", T0 + WINDOW_MS, 0, LEASE_MS), Admitted)


async def test_refusal_at_one_scope_consumes_nothing_elsewhere(store_factory: StoreFactory) -> None:
    key = ScopeLimits("k:a", "key 'a'", rpm=10, tpm=1000)
    team = ScopeLimits("t:x", "team 'x'", rpm=1)
    async with store_factory() as store:
        assert isinstance(await store.rl_reserve((key, team), "r1", T0, 100, LEASE_MS), Admitted)
        assert await store.rl_reserve((key, team), "r2", T0 + 1, 100, LEASE_MS) == Refusal(1, "requests", WINDOW_MS - 1)
        decision = await store.rl_reserve((key,), "r3", T0 + 2, 100, LEASE_MS)
        assert isinstance(decision, Admitted)
        assert (decision.states[0].requests, decision.states[0].tokens) == (2, 200)


async def test_tpm_reconciles_and_refunds(store_factory: StoreFactory) -> None:
    scope = (ScopeLimits("k:a", "key 'a'", tpm=1000),)
    async with store_factory() as store:
        assert isinstance(await store.rl_reserve(scope, "r1", T0, 900, LEASE_MS), Admitted)
        assert await store.rl_reserve(scope, "r2", T0 + 10, 200, LEASE_MS) == Refusal(0, "tokens", WINDOW_MS - 10)
        await store.run_batch([LIMITS_SETTLE(scope, "r1", T0, 900, 150, True)])
        decision = await store.rl_reserve(scope, "r2", T0 + 20, 200, LEASE_MS)
        assert isinstance(decision, Admitted) and decision.states[0].tokens == 350
        # Charging more than reserved counts too.
        await store.run_batch([LIMITS_SETTLE(scope, "r2", T0 + 20, 200, 800, True)])
        assert await store.rl_reserve(scope, "r3", T0 + 30, 100, LEASE_MS) == Refusal(0, "tokens", WINDOW_MS - 30)
        # A request larger than the limit can never fit.
        assert await store.rl_reserve(scope, "r4", T0 + 40, 1001, LEASE_MS) == Refusal(0, "tokens", -1)


async def test_concurrency_leases_release_and_expire(store_factory: StoreFactory) -> None:
    scope = (ScopeLimits("k:a", "key 'a'", max_parallel=2),)
    async with store_factory() as store:
        assert isinstance(await store.rl_reserve(scope, "r1", T0, 0, LEASE_MS), Admitted)
        assert isinstance(await store.rl_reserve(scope, "r2", T0, 0, LEASE_MS), Admitted)
        refused = await store.rl_reserve(scope, "r3", T0 + 1, 0, LEASE_MS)
        assert isinstance(refused, Refusal) and refused.limit == "concurrency" and refused.retry_after_ms > 0
        await store.run_batch([LIMITS_SETTLE(scope, "r1", T0, 0, 0, True)])
        assert isinstance(await store.rl_reserve(scope, "r3", T0 + 2, 0, LEASE_MS), Admitted)
        # r2 and r3 are never released (a crashed replica): their leases expire.
        assert isinstance(await store.rl_reserve(scope, "r4", T0 + 3, 0, LEASE_MS), Refusal)
        assert isinstance(await store.rl_reserve(scope, "r4", T0 + 2 + LEASE_MS, 0, LEASE_MS), Admitted)


async def test_per_day_limits(store_factory: StoreFactory) -> None:
    start = (T0 // DAY_MS + 1) * DAY_MS - 10_000  # ten seconds before a UTC midnight
    scope = (ScopeLimits("k:a", "key 'a'", rpd=2, tpd=100),)
    async with store_factory() as store:
        assert isinstance(await store.rl_reserve(scope, "r1", start, 40, LEASE_MS), Admitted)
        assert isinstance(await store.rl_reserve(scope, "r2", start + 1, 40, LEASE_MS), Admitted)
        assert await store.rl_reserve(scope, "r3", start + 2, 1, LEASE_MS) == Refusal(
            0, "requests_per_day", day_left_ms(start + 2))
        assert isinstance(await store.rl_reserve(scope, "r3", start + 10_000, 90, LEASE_MS), Admitted)
        await store.run_batch([LIMITS_SETTLE(scope, "r3", start + 10_000, 90, 10, True)])
        decision = await store.rl_reserve(scope, "r4", start + 10_001, 90, LEASE_MS)
        assert isinstance(decision, Admitted) and decision.states[0].day_tokens == 100


# ---------------------------------------------------------------------------------------------
# The reference model and the property test
# ---------------------------------------------------------------------------------------------


@dataclass
class RefScope:
    log: list[list[int | str]] = field(default_factory=list)  # [t, rid, tokens]
    leases: dict[str, int] = field(default_factory=dict)
    days: dict[int, list[int]] = field(default_factory=dict)  # UTC day → [requests, tokens]


class Reference:
    def __init__(self) -> None:
        self.scopes: dict[str, RefScope] = {}

    def reserve(self, scopes: tuple[ScopeLimits, ...], rid: str, now: int, tokens: int) -> tuple[bool, int, str]:
        for i, limits in enumerate(scopes):
            s = self.scopes.setdefault(limits.id, RefScope())
            live = [e for e in s.log if int(e[0]) > now - WINDOW_MS]
            if limits.rpm and len(live) + 1 > limits.rpm:
                return False, i, "requests"
            if limits.tpm and sum(int(e[2]) for e in live) + tokens > limits.tpm:
                return False, i, "tokens"
            if limits.max_parallel and sum(1 for x in s.leases.values() if x > now) >= limits.max_parallel:
                return False, i, "concurrency"
            day = s.days.get(now // DAY_MS, [0, 0])
            if limits.rpd and day[0] + 1 > limits.rpd:
                return False, i, "requests_per_day"
            if limits.tpd and day[1] + tokens > limits.tpd:
                return False, i, "tokens_per_day"
        for limits in scopes:
            s = self.scopes[limits.id]
            if limits.rpm or limits.tpm:
                s.log.append([now, rid, tokens])
            if limits.max_parallel:
                s.leases[rid] = now + LEASE_MS
            if limits.rpd or limits.tpd:
                day = s.days.setdefault(now // DAY_MS, [0, 0])
                day[0] += 1
                day[1] += tokens
        return True, -1, ""

    def settle(self, scopes: tuple[ScopeLimits, ...], rid: str, now: int, at: int, reserved: int,
               actual: int) -> None:
        for limits in scopes:
            s = self.scopes[limits.id]
            if limits.tpd:
                s.days[at // DAY_MS][1] += actual - reserved
            for e in s.log:
                if e[1] == rid and limits.tpm and int(e[0]) > now - WINDOW_MS:
                    e[2] = actual
            s.leases.pop(rid, None)


SCOPES = (
    ScopeLimits("k:a", "key 'a'", rpm=5, tpm=400, max_parallel=3),
    ScopeLimits("t:x", "team 'x'", rpm=8, tpm=600),
    ScopeLimits("a:m", "alias 'm'", rpm=6, max_parallel=4),
    ScopeLimits("d:x", "deployment 'x'", rpd=9, tpd=900),
)

step = st.one_of(
    st.tuples(st.just("reserve"), st.sets(st.integers(0, 3), min_size=1), st.integers(0, 250)),
    st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 300)),
    st.tuples(st.just("tick"), st.sampled_from([0, 1, 500, 9_999, 20_000, 59_999, 60_000, 61_000, DAY_MS]), st.just(0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(step, min_size=1, max_size=40))
def test_matches_reference_and_never_exceeds(store_factory: StoreFactory, steps: list[tuple[object, ...]]) -> None:
    run(_exercise(store_factory, steps))


async def _exercise(store_factory: StoreFactory, steps: list[tuple[object, ...]]) -> None:
    ref = Reference()
    now = T0
    open_holds: list[tuple[tuple[ScopeLimits, ...], str, int, int]] = []
    admitted: dict[str, list[tuple[int, str]]] = {s.id: [] for s in SCOPES}
    charged: dict[str, int] = {}
    async with store_factory() as store:
        for n, (kind, a, b) in enumerate(steps):
            if kind == "tick":
                now += int(a)  # type: ignore[call-overload]
            elif kind == "reserve":
                scopes = tuple(SCOPES[i] for i in sorted(a))  # type: ignore[attr-defined]
                tokens = int(b)  # type: ignore[call-overload]
                rid = f"r{n}"
                decision = await store.rl_reserve(scopes, rid, now, tokens, LEASE_MS)
                ok, index, limit = ref.reserve(scopes, rid, now, tokens)
                if ok:
                    assert isinstance(decision, Admitted), (decision, n)
                    for scope in scopes:  # tokens in the window, as charged now, stay within the TPM
                        if scope.tpm:
                            live = sum(charged[r] for t, r in admitted[scope.id] if t > now - WINDOW_MS)
                            assert live + tokens <= scope.tpm
                    open_holds.append((scopes, rid, now, tokens))
                    charged[rid] = tokens
                    for scope in scopes:
                        admitted[scope.id].append((now, rid))
                else:
                    assert isinstance(decision, Refusal), (decision, n)
                    assert (decision.index, decision.limit) == (index, limit)
                    if limit.endswith("per_day"):
                        assert decision.retry_after_ms in (-1, day_left_ms(now))
                    else:
                        assert 0 < decision.retry_after_ms <= WINDOW_MS
            elif open_holds:
                scopes, rid, at, tokens = open_holds.pop(int(a) % len(open_holds))  # type: ignore[call-overload]
                actual = int(b)  # type: ignore[call-overload]
                await store.run_batch([LIMITS_SETTLE(scopes, rid, at, tokens, actual, True)])
                ref.settle(scopes, rid, now, at, tokens, actual)
                if at > now - WINDOW_MS:
                    charged[rid] = actual
            _check_windows(admitted)
        # Settle the rest; after a window every scope is empty again (nothing leaked).
        for scopes, rid, at, tokens in open_holds:
            await store.run_batch([LIMITS_SETTLE(scopes, rid, at, tokens, tokens, True)])
        now += WINDOW_MS
        for i, scope in enumerate(SCOPES):
            probe = ScopeLimits(scope.id, scope.label, rpm=1000, tpm=10_000, max_parallel=100)
            decision = await store.rl_reserve((probe,), f"probe{i}", now, 7, LEASE_MS)
            assert isinstance(decision, Admitted)
            assert (decision.states[0].requests, decision.states[0].tokens, decision.states[0].leases) == (1, 7, 1)
        day = SCOPES[3]
        expected = ref.scopes.get(day.id, RefScope()).days.get(now // DAY_MS, [0, 0])
        if expected[0] < day.rpd and expected[1] + 1 <= day.tpd:
            decision = await store.rl_reserve((day,), "probe-day", now, 1, LEASE_MS)
            assert isinstance(decision, Admitted)
            assert (decision.states[0].day_requests, decision.states[0].day_tokens) == (
                expected[0] + 1, expected[1] + 1)


def _check_windows(admitted: dict[str, list[tuple[int, str]]]) -> None:
    """Never more requests than the RPM inside any 60s window, nor than the RPD in a UTC day."""
    for scope in SCOPES:
        times = admitted[scope.id]
        for t, _ in times:
            if scope.rpm:
                assert sum(1 for u, _ in times if t <= u < t + WINDOW_MS) <= scope.rpm
            if scope.rpd:
                assert sum(1 for u, _ in times if u // DAY_MS == t // DAY_MS) <= scope.rpd


async def test_tokens_within_window_bounded_at_admission(store_factory: StoreFactory) -> None:
    """Many concurrent reservations: admitted tokens never exceed the TPM."""
    scope = (ScopeLimits("k:a", "key 'a'", tpm=1000),)
    async with store_factory() as store:
        results = await asyncio.gather(*(store.rl_reserve(scope, f"r{i}", T0 + i, 70, LEASE_MS) for i in range(40)))
    assert sum(isinstance(r, Admitted) for r in results) == 1000 // 70


async def test_script_reloaded_after_the_server_forgot_it(store_factory: StoreFactory) -> None:
    """A restarted or failed-over Redis has no scripts: reserve reloads, settle works again.
    (Only on fakeredis: SCRIPT FLUSH on the shared real Redis would disturb other users.)"""
    scope = (ScopeLimits("k:a", "key 'a'", rpm=5, tpm=100),)
    async with store_factory() as store:
        client = getattr(store, "client", None)
        if not isinstance(client, fakeredis.FakeAsyncRedis):
            pytest.skip("needs a private Redis")
        assert isinstance(await store.rl_reserve(scope, "r1", T0, 10, LEASE_MS), Admitted)
        await client.script_flush()
        assert isinstance(await store.rl_reserve(scope, "r2", T0 + 1, 10, LEASE_MS), Admitted)
        await store.run_batch([LIMITS_SETTLE(scope, "r1", T0, 10, 1, True)])
        decision = await store.rl_reserve(scope, "r3", T0 + 2, 10, LEASE_MS)
        assert isinstance(decision, Admitted) and decision.states[0].tokens == 21


async def test_tpm_retry_after_scan_is_bounded(store_factory: StoreFactory) -> None:
    scope = (ScopeLimits("k:a", "key 'a'", tpm=1000),)
    async with store_factory() as store:
        for i in range(200):
            assert isinstance(await store.rl_reserve(scope, f"r{i}", T0 + i, 5, LEASE_MS), Admitted)
        now = T0 + 1000
        # 500 tokens free up when the 100th oldest request leaves: exact.
        assert await store.rl_reserve(scope, "x", now, 500, LEASE_MS) == Refusal(0, "tokens", T0 + 99 + WINDOW_MS - now)
        # The whole limit needs all 200 to leave; the scan stops at 128 and answers a lower bound.
        assert await store.rl_reserve(scope, "y", now, 1000, LEASE_MS) == Refusal(0, "tokens",
                                                                                 T0 + 127 + WINDOW_MS - now)
