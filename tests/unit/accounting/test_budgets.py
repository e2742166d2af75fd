"""Budget rules are found by the key's digest: a runtime key given a config key's name is another key."""

from __future__ import annotations

import hashlib

from gateway.accounting.budgets import BudgetPlan
from gateway.config import AuthConfig
from gateway.context import Principal

AUTH = AuthConfig.model_validate({
    "keys": [{"name": "app", "team": "search", "key": "sk-config-app", "budget": {"usd": 5, "period": "day"}}],
    "teams": {"search": {"budget": {"usd": 50, "period": "month"}}, "ads": {"budget": {"usd": 9, "period": "day"}}}})


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_a_config_key_has_its_own_budget_and_its_teams() -> None:
    rules = BudgetPlan(AUTH).rules_for(Principal(name="app", team="search", key_hash=digest("sk-config-app")))
    assert [(r.scope, r.name) for r in rules] == [("key", "app"), ("team", "search")]


def test_a_runtime_key_of_the_same_name_shares_nothing_but_its_teams_budget() -> None:
    plan = BudgetPlan(AUTH)
    namesake = Principal(name="app", team="ads", key_hash=digest("sk-runtime"))
    assert [(r.scope, r.name) for r in plan.rules_for(namesake)] == [("team", "ads")]
    assert plan.rules_for(Principal(name="app", key_hash=digest("sk-runtime-2"))) == ()
    assert plan.rules_for(Principal(name="app")) == ()  # the anonymous caller
    assert {(r.scope, r.name) for r in plan.rules()} == {("key", "app"), ("team", "search"), ("team", "ads")}
