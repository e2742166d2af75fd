"""What one attempt's observation does to a deployment's routing record: peak-EWMA latency, TTFT
mean/variance, error rate, the failure window and the circuit's transitions.

`apply_observation` is the reference semantics: the embedded store runs it (store_memory.py), the Lua
script of store_redis.py mirrors it line by line, one contract suite checks both, and the routing
statistics apply it to their local copy at once. Times are the caller's clock (seconds), so tests
can drive cooldowns with a fake clock.
"""

from __future__ import annotations

import math

# An observation on the wire: (deployment id, ok, latency per output token, duration, ttft,
# retry_after, now, tau, failures, window, base, max, failure_rate, min_calls); -1 marks "no sample".
Observation = tuple[str, int, float, float, float, float, float, float, int, float, float, float, float, int]

FIELDS = ("lat", "lat_t", "lat_n", "dur_m", "dur_v", "ttft", "ttft_t", "ttft_n", "ttft_m", "ttft_v",
          "err", "n", "fails", "fails_t", "open_until", "level", "probe_until", "calls", "streak", "streak_t")
# Smoothing of the plain (count-based) averages: TTFT/duration mean and variance, error rate.
ALPHA = 0.2
# The `ok` of an observation that carries no verdict: a half-open probe that ended without saying
# anything about the deployment (a 4xx that was the request's fault, a cancelled attempt) only
# frees the probe slot, so the next request may probe at once.
RELEASE_PROBE = 2


def _peak(h: dict[str, float], name: str, sample: float, now: float, tau: float) -> None:
    """Peak-sensitive EWMA: a slower sample is taken at once, faster ones blend in with a weight
    that decays with the time since the last sample (so a long-unsampled value forgets quickly)."""
    if h[name + "_n"] == 0 or sample > h[name]:
        h[name] = sample
    else:
        w = math.exp(-max(0.0, now - h[name + "_t"]) / tau)
        h[name] = h[name] * w + sample * (1 - w)
    h[name + "_t"] = now
    h[name + "_n"] += 1


def _meanvar(h: dict[str, float], m: str, v: str, first: bool, x: float) -> None:
    if first:
        h[m], h[v] = x, 0.0
        return
    diff = x - h[m]
    h[m] += ALPHA * diff
    h[v] = (1 - ALPHA) * (h[v] + ALPHA * diff * diff)


def _count(h: dict[str, float], ok: int, now: float, window: float) -> None:
    """The closed circuit's counters: calls and failures in the current window (restarted once it is
    `window` old), and the run of failures in a row (each within `window` of the one before)."""
    if h["fails_t"] == 0 or now - h["fails_t"] > window:
        h["calls"], h["fails"], h["fails_t"] = 0.0, 0.0, now
    h["calls"] += 1
    if ok:
        h["streak"] = 0.0
        return
    h["fails"] += 1
    h["streak"] = 1.0 if h["streak_t"] == 0 or now - h["streak_t"] > window else h["streak"] + 1
    h["streak_t"] = now


def _reset_counts(h: dict[str, float]) -> None:
    h["calls"] = h["fails"] = h["fails_t"] = h["streak"] = h["streak_t"] = 0.0


def apply_observation(h: dict[str, float], o: Observation) -> None:
    _, ok, lat, dur, ttft, retry_after, now, tau, fail_n, window, base, cap, rate, min_calls = o
    if ok == RELEASE_PROBE:
        if 0 < h["open_until"] <= now:
            h["probe_until"] = 0.0
        return
    if lat >= 0:
        _meanvar(h, "dur_m", "dur_v", h["lat_n"] == 0, dur)
        _peak(h, "lat", lat, now, tau)
    if ttft >= 0:
        _meanvar(h, "ttft_m", "ttft_v", h["ttft_n"] == 0, ttft)
        _peak(h, "ttft", ttft, now, tau)
    h["err"] = (1.0 - ok) if h["n"] == 0 else h["err"] + ALPHA * ((1.0 - ok) - h["err"])
    h["n"] += 1
    open_until = h["open_until"]
    if ok:
        if open_until > 0 and now >= open_until:  # the probe (or a late success) closes the circuit
            h["open_until"] = h["level"] = h["probe_until"] = 0.0
            _reset_counts(h)
        elif open_until == 0:
            _count(h, ok, now, window)
        return
    if open_until > 0 and now >= open_until:  # half-open and failed again: reopen, longer
        h["level"] += 1
        h["open_until"] = now + min(cap, base * 2 ** (h["level"] - 1))
        h["probe_until"] = 0.0
        _reset_counts(h)
    elif open_until > 0:  # already open (a failure that was in flight)
        if retry_after > 0:
            h["open_until"] = max(open_until, now + min(retry_after, cap))
    elif retry_after > 0:  # 429 + Retry-After: open for as long as the provider asks
        h["open_until"] = now + min(retry_after, cap)
        _reset_counts(h)
    else:
        _count(h, ok, now, window)
        # A run of failures opens at once at any traffic; scattered failures open only when they are
        # a large enough share of enough calls (rare errors are left to retries).
        if h["streak"] >= fail_n or (h["calls"] >= min_calls and h["fails"] >= rate * h["calls"]):
            h["level"] += 1
            h["open_until"] = now + min(cap, base * 2 ** (h["level"] - 1))
            _reset_counts(h)


def claim_probe(h: dict[str, float], now: float, ttl: float) -> bool:
    """True when the caller may send: closed, or half-open and the probe was free (now taken)."""
    open_until = h["open_until"]
    if open_until == 0:
        return True
    if now < open_until or h["probe_until"] > now:
        return False
    h["probe_until"] = now + ttl
    return True


def empty() -> dict[str, float]:
    return dict.fromkeys(FIELDS, 0.0)
