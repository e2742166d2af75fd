"""The price table and the cost of a call, in integer micro-USD.

Prices are published in USD per million tokens. Internally each becomes an integer number of
pico-USD per token (1 USD per million tokens = 1 micro-USD per token = 10^6 pico-USD per token), so a
call's cost is an exact integer sum in pico-USD, rounded once (half up) to micro-USD. A price the
table does not know is None ("unknown"), never 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config import Deployment, GatewayConfig, Price
from gateway.context import Usage
from gateway.logs import get_logger

log = get_logger("accounting")

PICO_PER_MICRO = 1_000_000


class PriceError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """Integer pico-USD per token for each kind of token."""

    input: int
    output: int
    cached_input: int
    cache_write: int

    @classmethod
    def from_price(cls, price: Price) -> UnitPrice:
        cached = price.cached_input if price.cached_input is not None else price.input
        write = price.cache_write if price.cache_write is not None else price.input
        return cls(_pico(price.input), _pico(price.output), _pico(cached), _pico(write))

    def cost_pico(self, usage: Usage) -> int:
        cached = max(0, usage.cached_tokens)
        write = max(0, usage.cache_write_tokens)
        # prompt_tokens counts every prompt token, cache reads and writes included (the adapters
        # normalise Anthropic's separate counts to this): the rest is billed at the input price.
        uncached = max(0, usage.prompt_tokens - cached - write)
        return (uncached * self.input + cached * self.cached_input + write * self.cache_write
                + max(0, usage.completion_tokens) * self.output)

    def cost_micro(self, usage: Usage) -> int:
        return micro_from_pico(self.cost_pico(usage))


def micro_from_pico(pico: int) -> int:
    return (pico + PICO_PER_MICRO // 2) // PICO_PER_MICRO


def _pico(usd_per_million: float) -> int:
    try:
        exact = Decimal(str(usd_per_million)) * PICO_PER_MICRO
    except InvalidOperation:
        raise PriceError(f"not a price: {usd_per_million!r}") from None
    if exact < 0 or exact != exact.to_integral_value():
        raise PriceError(f"price {usd_per_million} per million tokens has more than 6 decimals or is negative")
    return int(exact)


def format_usd(micro: int | None) -> str:
    """Exact decimal USD with six places, or "unknown"."""
    if micro is None:
        return "unknown"
    sign = "-" if micro < 0 else ""
    micro = abs(micro)
    return f"{sign}{micro // PICO_PER_MICRO}.{micro % PICO_PER_MICRO:06d}"


PriceTable = dict[str, dict[str, Price]]


def parse_prices(raw: object, source: str = "<prices>") -> PriceTable:
    """`{section: {model: {input, output, cached_input?, cache_write?, date, source}}}`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PriceError(f"{source}: the top level must be a mapping of provider sections")
    table: PriceTable = {}
    problems: list[str] = []
    for section, models in raw.items():
        if not isinstance(models, dict):
            problems.append(f"{source}: {section}: must map model names to prices")
            continue
        table[str(section)] = {}
        for model, entry in models.items():
            try:
                price = Price.model_validate(entry)
                UnitPrice.from_price(price)
            except (ValidationError, PriceError) as exc:
                problems.append(f"{source}: {section}.{model}: {exc}")
                continue
            table[str(section)][str(model)] = price
    if problems:
        raise PriceError("\n".join(problems))
    return table


# The price table shipped with the gateway, used when the config names none.
SHIPPED_PRICES = Path(__file__).resolve().parent.parent / "data" / "prices.yaml"


def prices_path(configured: str) -> Path:
    """The price table a config's `accounting.prices_file` means."""
    return Path(configured) if configured else SHIPPED_PRICES


def load_prices(path: str | Path) -> PriceTable:
    """The price file (empty path: the shipped one), or an empty table (every price unknown) when it
    is missing."""
    file = prices_path(str(path))
    if not file.exists():
        log.warning("price file not found; every cost is unknown", extra={"fields": {"path": str(file)}})
        return {}
    return parse_prices(yaml.safe_load(file.read_text(encoding="utf-8")), str(file))


def unpriced_budget_problem(config: GatewayConfig) -> str | None:
    """Budgets count cost, and cost needs prices: a config with budgets whose deployments are priced
    from a price table that is not there would admit every call for free, silently."""
    budgets = any(k.budget for k in config.auth.keys) or any(t.budget for t in config.auth.teams.values())
    table = prices_path(config.accounting.prices_file)
    if not budgets or table.is_file():
        return None
    from_table = sorted({d.id for spec in config.models.values() for d in spec.deployments
                         if not isinstance(d.price, Price)})
    if not from_table:
        return None
    return (f"accounting.prices_file: the price table {table} does not exist, and budgets need the prices "
            f"of {', '.join(from_table)} (fix the path, or give those deployments a `price:`)")


def lookup(table: Mapping[str, Mapping[str, Price]], sections: Iterable[str], model: str) -> Price | None:
    """The model's price in the first section that has it: an exact name, else the longest listed name
    followed only by a snapshot date or version (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`,
    `...-v1:0`, `-latest`); a Bedrock cross-region prefix (`us.`) is ignored. Never a looser match:
    `gpt-5-pro` is not `gpt-5`."""
    for section in sections:
        models = table.get(section)
        if not models:
            continue
        exact = models.get(model)
        if exact is not None:
            return exact
        best: str | None = None
        for name in models:
            if (model.startswith(name) and _VERSION_SUFFIX.fullmatch(model, len(name))
                    and (best is None or len(name) > len(best))):
                best = name
        if best is not None:
            return models[best]
    geo, dot, rest = model.partition(".")
    if dot and geo in _BEDROCK_GEOS:
        return lookup(table, sections, rest)
    return None


# What may follow a listed name and still be the same model: a snapshot date, a version, `-latest`.
_VERSION_SUFFIX = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest))?(?:-v\d+)?(?::\d+)?")
_BEDROCK_GEOS = frozenset(("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"))


def resolve_deployment(table: PriceTable, deployment: Deployment, provider_type: str) -> Price | None:
    price = deployment.price
    if isinstance(price, Price):
        return price
    if isinstance(price, str):
        section, _, model = price.partition("/")
        found = lookup(table, (section,), model) if model else None
        if found is None:
            log.warning("deployment price reference not in the price table; its cost is unknown",
                        extra={"fields": {"deployment": deployment.id, "price": price}})
        return found
    return lookup(table, (deployment.provider, provider_type), deployment.model)


def deployment_prices(config: GatewayConfig, table: PriceTable) -> dict[str, UnitPrice | None]:
    """deployment id → its unit price (None: unknown), resolved once per config load."""
    out: dict[str, UnitPrice | None] = {}
    for spec in config.models.values():
        for deployment in spec.deployments:
            provider = config.providers.get(deployment.provider)
            ptype = provider.type if provider is not None else ""
            price = resolve_deployment(table, deployment, ptype)
            out[deployment.id] = UnitPrice.from_price(price) if price is not None else None
    return out


def price_summary(price: Price) -> dict[str, Any]:
    return price.model_dump(exclude_none=True)
