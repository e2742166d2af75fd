"""Selection strategies: pure functions from a route and live statistics to the order in which its
deployments are tried (the first is the pick, the rest the order to fall back in). O(deployments),
no I/O, randomness only from the `rng` passed in.

The router removes deployments whose circuit is open before calling these."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Protocol

from gateway.config import Deployment
from gateway.routing.table import Route, Target

# A deployment's score is multiplied by (1 + ERROR_PENALTY * its EWMA error rate): a fast
# deployment that fails is not fast.
ERROR_PENALTY = 4.0
# Scores within 2% of each other are a tie (the random pair decides): a decayed old sample ties with
# the best value after ~10 tau, so the deployment gets traffic again and a fresh sample.
TIE = 0.02


class Live(Protocol):
    """What strategies may read: per-deployment statistics rows and local in-flight counts."""

    def get(self, dep: str) -> dict[str, float] | None: ...

    def inflight(self, dep: str) -> int: ...


def weighted_order(targets: Sequence[Target], rng: random.Random) -> list[Target]:
    """A weighted random permutation: the first pick follows the weights exactly, the rest are the
    order to fall back in (weighted sampling without replacement)."""
    if len(targets) == 1:
        return [targets[0]]
    # Efraimidis-Spirakis: sort by u^(1/w), one random draw per deployment.
    keyed = sorted(((rng.random() ** (1.0 / t.deployment.weight), i) for i, t in enumerate(targets)),
                   reverse=True)
    return [targets[i] for _, i in keyed]


def priority_order(targets: Sequence[Target], rng: random.Random) -> list[Target]:
    """Lowest rank first (a deployment's `priority`, else its place in the list: a list without
    priorities is tried in the order written); equal ranks share by weight."""
    shuffled = weighted_order(targets, rng)
    return sorted(shuffled, key=lambda t: t.rank)


def latency_scores(targets: Sequence[Target], live: Live, now: float, stream: bool, tau: float) -> list[float | None]:
    """Peak-EWMA latency (per output token, or TTFT for streams) * (in-flight + 1) * error penalty;
    None for a deployment with no sample yet. A sample's weight decays towards the best current
    value as it ages, so a deployment that was slow long ago is tried again and can win back."""
    metric = "ttft" if stream else "lat"
    rows = [live.get(t.id) for t in targets]
    sampled = [h[metric] for h in rows if h is not None and h[metric + "_n"] > 0]
    best = min(sampled) if sampled else 0.0
    scores: list[float | None] = []
    for t, h in zip(targets, rows, strict=True):
        if h is None or h[metric + "_n"] == 0:
            scores.append(None)
            continue
        w = math.exp(-max(0.0, now - h[metric + "_t"]) / tau)
        value = h[metric] * w + best * (1 - w)
        scores.append(value * (live.inflight(t.id) + 1) * (1 + ERROR_PENALTY * h["err"]))
    return scores


def latency_order(targets: Sequence[Target], rng: random.Random, live: Live, now: float, stream: bool,
                  tau: float) -> list[Target]:
    """Power of two choices over the scores. A deployment without samples is explored first (one
    request at a time: while it has one in flight it scores like the best sampled one)."""
    if len(targets) == 1:
        return [targets[0]]
    raw = latency_scores(targets, live, now, stream, tau)
    known = [s for s in raw if s is not None]
    floor = min(known) if known else 0.0
    scores: list[float] = []
    explore: list[int] = []
    for i, (t, s) in enumerate(zip(targets, raw, strict=True)):
        if s is None:
            n = live.inflight(t.id)
            if n == 0:
                explore.append(i)
            scores.append(floor * (n + 1))
        else:
            scores.append(s)
    if explore:
        first = explore[rng.randrange(len(explore))]
    else:
        a = rng.randrange(len(targets))
        b = rng.randrange(len(targets) - 1)
        b += b >= a
        first = b if scores[b] < scores[a] * (1 - TIE) else a  # (a, b) is a random pair
    rest = sorted((i for i in range(len(targets)) if i != first), key=lambda i: (scores[i], rng.random()))
    return [targets[first], *(targets[i] for i in rest)]


def least_busy_order(targets: Sequence[Target], rng: random.Random, live: Live) -> list[Target]:
    """Fewest requests in flight (on this replica) first; ties broken at random."""
    return sorted(targets, key=lambda t: (live.inflight(t.id), rng.random()))


def deployment_cost(d: Deployment) -> float | None:
    """USD per million tokens: the `cost_per_mtok` hint, else a numeric `price` the deployment
    carries, else a price object's mean of `input` and `output`; None when unknown."""
    if d.cost_per_mtok is not None:
        return d.cost_per_mtok
    price = getattr(d, "price", None)
    if isinstance(price, int | float) and not isinstance(price, bool):
        return float(price)
    parts = [getattr(price, name, None) for name in ("input", "output")]
    numbers = [float(p) for p in parts if isinstance(p, int | float) and not isinstance(p, bool)]
    return sum(numbers) / len(numbers) if numbers else None


def cost_order(targets: Sequence[Target], rng: random.Random) -> list[Target]:
    """Cheapest first; equal costs share by weight; unknown costs last."""
    shuffled = weighted_order(targets, rng)
    return sorted(shuffled, key=_cost_key)


def _cost_key(t: Target) -> tuple[bool, float]:
    cost = t.cost if t.cost is not None else deployment_cost(t.deployment)
    return (cost is None, cost if cost is not None else 0.0)


def order_for(route: Route, targets: Sequence[Target], rng: random.Random, live: Live, now: float,
              stream: bool, tau: float) -> list[Target]:
    strategy = route.config.strategy
    if strategy == "latency":
        return latency_order(targets, rng, live, now, stream, tau)
    if strategy == "least-busy":
        return least_busy_order(targets, rng, live)
    if strategy == "cost":
        return cost_order(targets, rng)
    if strategy == "priority":
        return priority_order(targets, rng)
    return weighted_order(targets, rng)
