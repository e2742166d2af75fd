"""The package's shape, as DESIGN.md draws it: imports only point down the layers, the third-party
libraries with a single owner stay in that owner, and no module grows past the size budget."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"

# Module (or package) → layer. A module may import from its own layer or any lower one. A dotted name
# places one module of a package on its own layer (the longest match wins): routing's store operations
# sit with the store that runs them (L1), below the router (L2).
LAYERS: dict[str, int] = {
    "schemas": 0, "errors": 0, "config": 0, "context": 0, "tokens": 0, "metrics": 0, "logs": 0,
    "ids": 0, "background": 0,
    "store": 1, "httpclient": 1, "auth": 1, "ratelimit": 1, "cache": 1, "accounting": 1, "providers": 1, "upstream": 1,
    "dialects": 1, "conversations": 1,
    "routing": 2, "routing.observations": 1, "routing.store": 1, "routing.store_memory": 1, "routing.store_redis": 1,
    "pipeline": 3, "settlement": 3, "runtime": 3, "stages": 3, "ops": 3,
    "endpoints": 4, "middleware": 4,
    "app": 5, "server": 5, "cli": 5, "__main__": 5, "__init__": 5,
}
# Third-party libraries that exactly one place may import.
OWNERS = {
    "aiohttp": set(),  # tests' fake upstreams only: the gateway's client is gateway/httpclient.py
    "httptools": {"httpclient", "server"},
    "prometheus_client": {"metrics"},
    "starlette": {"app", "endpoints", "middleware"},
    "redis": {"store"},
}
HARD_LIMIT = 800


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def top(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def dotted(path: Path) -> str:
    """`gateway/routing/stats.py` → `routing.stats` (a package's `__init__.py` → the package)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer(name: str) -> int:
    """The layer of a module (`routing.stats`) or of an imported name (`routing.stats.RoutingStats`)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        found = LAYERS.get(".".join(parts[:end]))
        if found is not None:
            return found
    raise KeyError(name)


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_every_module_has_a_layer() -> None:
    unknown = {top(p) for p in modules()} - set(LAYERS)
    assert not unknown, f"give these a layer in this test and in DESIGN.md: {sorted(unknown)}"
    placed = [name for name in LAYERS if "." in name]
    assert all((PACKAGE / (name.replace(".", "/") + ".py")).exists() for name in placed), placed


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    own = layer(dotted(path))
    for name in imported(path):
        parts = name.split(".")
        if parts[0] == "gateway" and len(parts) > 1:
            target = layer(".".join(parts[1:]))
            assert target <= own, f"{path.relative_to(PACKAGE)} (L{own}) imports {name} (L{target})"
        owners = OWNERS.get(parts[0])
        if owners is not None:
            assert top(path) in owners, f"{path.relative_to(PACKAGE)} imports {parts[0]}, owned by {owners}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size_budget(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= HARD_LIMIT, f"{path.relative_to(PACKAGE)} has {lines} lines (limit {HARD_LIMIT})"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The import check really sees an upward import, and a module placed on its own layer keeps it."""
    bad = tmp_path / "bad.py"
    bad.write_text("from gateway.app import create_app\nimport aiohttp\n")
    assert "gateway.app" in imported(bad)
    assert "aiohttp" in imported(bad)
    assert layer(dotted(PACKAGE / "routing" / "store_redis.py")) == 1
    assert layer("routing.stats.RoutingStats") == 2
    assert layer(dotted(PACKAGE / "routing" / "__init__.py")) == 2
