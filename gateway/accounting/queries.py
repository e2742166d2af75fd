"""Reading spend and budgets back (admin API, CLI): day hashes folded into totals per name."""

from __future__ import annotations

import calendar
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from gateway.accounting.budgets import BudgetPlan, counter_id, periods_at, rule_tag
from gateway.accounting.prices import format_usd
from gateway.accounting.store import AccountingStore
from gateway.config import AuthConfig

DIMENSIONS = ("key", "team", "alias", "deployment")
MAX_DAYS = 400
_MONEY = ("cost", "saved")


class QueryError(ValueError):
    pass


def parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise QueryError(f"'{value}' is not a date (YYYY-MM-DD)") from None


def day_range(since: str | None, until: str | None, period: str | None, now: float) -> tuple[dt.date, dt.date]:
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    if since is None:
        if period in (None, "month"):
            start = today.replace(day=1)
        elif period == "day":
            start = today
        else:
            raise QueryError("period must be 'day' or 'month'")
    else:
        start = parse_day(since)
    end = parse_day(until) if until else today
    if end < start:
        raise QueryError("'until' is before 'since'")
    if (end - start).days >= MAX_DAYS:
        raise QueryError(f"at most {MAX_DAYS} days per query")
    return start, end


def days_between(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range((end - start).days + 1)]


def fold(days: Mapping[str, Mapping[str, int]], by: str, name: str | None) -> dict[str, dict[str, Any]]:
    """Day hashes (`dim|name|metric` → int) → {name: {metric: total, ..., "days": {day: {...}}}}.

    Keys are filed by identity (`key|<key id>|<name>|metric`): by key, the answer is keyed by the key id
    and each entry says its `name`, so two keys given the same name stay apart. `name` selects by
    either. (Rows written before keys had ids are keyed by their name.)"""
    if by not in DIMENSIONS:
        raise QueryError(f"'by' must be one of {', '.join(DIMENSIONS)}")
    out: dict[str, dict[str, Any]] = {}
    for day, fields in sorted(days.items()):
        for field, value in fields.items():
            dim, _, rest = field.partition("|")
            if dim != by:
                continue
            who, _, metric = rest.rpartition("|")
            label = shown = who
            if by == "key":
                key_id, filed, key_name = who.partition("|")
                if filed:
                    label, shown = key_id, key_name
            if name is not None and name != label and name != shown:
                continue
            entry = out.setdefault(label, {"days": {}})
            if by == "key":
                entry["name"] = shown
            entry[metric] = entry.get(metric, 0) + value
            entry["days"].setdefault(day, {})[metric] = value
    for entry in out.values():
        for money in _MONEY:
            entry[f"{money}_micro_usd"] = entry.pop(money, 0)
            entry[f"{money}_usd"] = format_usd(entry[f"{money}_micro_usd"])
        for day_entry in entry["days"].values():
            for money in _MONEY:
                if money in day_entry:
                    day_entry[f"{money}_micro_usd"] = day_entry.pop(money)
        entry.setdefault("unpriced", 0)
    return out


async def spend(store: AccountingStore, by: str, name: str | None, start: dt.date, end: dt.date) -> dict[str, Any]:
    days = await store.spend_read(days_between(start, end))
    return {"by": by, "since": start.isoformat(), "until": end.isoformat(), "spend": fold(days, by, name)}


async def budgets(store: AccountingStore, auth: AuthConfig, now: float | None = None) -> list[dict[str, Any]]:
    """Every budget with what its current period has used (committed spend plus reservations)."""
    now = time.time() if now is None else now
    plan = BudgetPlan(auth)
    periods = periods_at(now)
    teams = {key.name: key.team for key in auth.keys}
    out = []
    for rule in plan.rules():
        tag = rule_tag(rule, teams.get(rule.name) if rule.scope == "key" else None)
        used = (await store.budget_read(tag, [counter_id(rule, periods)]))[0]
        resets = periods.day_end if rule.period == "day" else periods.month_end
        out.append({"scope": rule.scope, "name": rule.name, "period": rule.period,
                    "limit_usd": format_usd(rule.limit_micro), "used_usd": format_usd(used),
                    "remaining_usd": format_usd(max(0, rule.limit_micro - used)),
                    "resets_at": dt.datetime.fromtimestamp(resets, dt.UTC).isoformat()})
    return out


def since_ms(value: str) -> int:
    """`YYYY-MM-DD`, an ISO timestamp (UTC unless it says otherwise) or epoch milliseconds."""
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"'{value}' is not a date, an ISO timestamp or epoch milliseconds") from None
    if parsed.tzinfo is None:
        return calendar.timegm(parsed.timetuple()) * 1000 + parsed.microsecond // 1000
    return int(parsed.timestamp() * 1000)
