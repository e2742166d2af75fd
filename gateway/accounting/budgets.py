"""Budgets per key and team: USD per calendar day or month (UTC), as integer micro-USD counters.

A counter holds committed spend plus the reservations of calls in flight. Admit reserves the call's
estimated cost (refused when it does not fit); settle adds `actual - reserved`. The counters of one
principal share a hash tag (its team, or the key itself), so one Lua call checks them all."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from gateway.config import AuthConfig, Budget
from gateway.context import Principal

# A counter outlives its period by this much, so a call settling just after midnight still finds it.
GRACE_SECONDS = 2 * 86400


@dataclass(frozen=True, slots=True)
class Rule:
    scope: str  # "key" or "team"
    name: str
    period: str  # "day" or "month"
    limit_micro: int
    usd: float


@dataclass(frozen=True, slots=True)
class Periods:
    """The current UTC day and month, and when each ends (epoch seconds)."""

    day: str
    month: str
    day_end: float
    month_end: float


def periods_at(now: float) -> Periods:
    t = time.gmtime(now)
    day_start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return Periods(day=f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}", month=f"{t.tm_year:04d}{t.tm_mon:02d}",
                   day_end=float(day_start + 86400), month_end=float(calendar.timegm((year, month, 1, 0, 0, 0))))


@dataclass(frozen=True, slots=True)
class BudgetHold:
    """What admit reserved for one call (kept on the context until settle)."""

    tag: str
    counters: tuple[str, ...]
    reserved: int
    ttl: int
    # The reserve timed out: whether it was applied is unknown (settle releases it if it was).
    uncertain: bool = False


class BudgetPlan:
    def __init__(self, auth: AuthConfig) -> None:
        self._team: dict[str, Rule] = {}
        for team, spec in auth.teams.items():
            if spec.budget is not None:
                self._team[team] = _rule("team", team, spec.budget)
        # By the key's digest, not its name: a runtime key given a config key's name is another key.
        self._by_key: dict[str, tuple[Rule, ...]] = {}
        for key in auth.keys:
            rules = []
            if key.budget is not None:
                rules.append(_rule("key", key.name, key.budget))
            if key.team is not None and key.team in self._team:
                rules.append(self._team[key.team])
            if rules:
                self._by_key[key.digest()] = tuple(rules)
        self._periods: Periods | None = None

    def rules_for(self, principal: Principal) -> tuple[Rule, ...]:
        """A config key's own budget and its team's; a runtime key (the admin API gives it no budget of
        its own) answers to its team's."""
        if principal.key_hash is None:
            return ()
        rules = self._by_key.get(principal.key_hash)
        if rules is not None:
            return rules
        team = self._team.get(principal.team) if principal.team is not None else None
        return (team,) if team is not None else ()

    def rules(self) -> list[Rule]:
        seen: dict[tuple[str, str], Rule] = {}
        for rules in (*self._by_key.values(), tuple(self._team.values())):
            for rule in rules:
                seen[(rule.scope, rule.name)] = rule
        return list(seen.values())

    def periods(self, now: float) -> Periods:
        current = self._periods
        if current is None or now >= current.day_end or now < current.day_end - 86400:
            current = self._periods = periods_at(now)
        return current

    def counters(self, principal: Principal, rules: tuple[Rule, ...], now: float) -> tuple[str, tuple[str, ...], int]:
        """(hash tag, counter ids, ttl seconds) for these rules at `now`."""
        p = self.periods(now)
        ids = tuple(counter_id(r, p) for r in rules)
        end = max(p.day_end if r.period == "day" else p.month_end for r in rules)
        return tag_for(principal), ids, int(end - now) + GRACE_SECONDS


def counter_id(rule: Rule, periods: Periods) -> str:
    return f"{rule.scope}:{rule.name}:{periods.day if rule.period == 'day' else periods.month}"


def tag_for(principal: Principal) -> str:
    return f"team:{principal.team}" if principal.team else f"key:{principal.name}"


def rule_tag(rule: Rule, team_of_key: str | None) -> str:
    if rule.scope == "team":
        return f"team:{rule.name}"
    return f"team:{team_of_key}" if team_of_key else f"key:{rule.name}"


def _rule(scope: str, name: str, budget: Budget) -> Rule:
    return Rule(scope, name, budget.period, round(budget.usd * 1_000_000), budget.usd)
