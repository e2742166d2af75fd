"""The documentation: the README stays short and keeps the two commands CI and newcomers run, the MkDocs
site builds with --strict (a broken link or anchor, or a page missing from the navigation, fails it),
every module the architecture page names exists, and the generated configuration reference lists every
field of the config models."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gateway import config as config_module
from gateway.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -q . && "
               ".venv/bin/gateway serve --config config/gateway.yaml")
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f",
                             str(ROOT / "mkdocs.yml"), "-d", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    assert blocks[:2] == [RUN_COMMAND, TEST_COMMAND]


def test_every_local_link_of_the_readme_exists() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link


# A path the architecture page names: `pipeline.py`, `routing/router.py`, `endpoints/`, `tests/docs/`
# (not "I/O" or "try/finally": a name ends at ".py" or at a "/" that no letter follows).
MODULE_PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+(?:\.py\b|/(?!\w)))")


def named_paths(text: str) -> set[str]:
    return set(MODULE_PATH.findall(text))


def test_the_module_path_pattern_finds_names_and_skips_prose() -> None:
    assert named_paths("pipeline.py: routing/router.py → `endpoints/`, I/O in try/finally") == {
        "pipeline.py", "routing/router.py", "endpoints/"}


def test_every_module_the_architecture_page_names_exists() -> None:
    """Module names are relative to the package (`routing/router.py`) or to the repository
    (`gateway/dialects/base.py`, `tests/architecture/`)."""
    names = named_paths((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert len(names) > 20
    missing = sorted(n for n in names if not (ROOT / "gateway" / n).exists() and not (ROOT / n).exists())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    built = {p.parent.name if p.parent != site else "index" for p in site.rglob("index.html")}
    assert pages <= built


def reachable_models() -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.add(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(config_module.GatewayConfig)
    return seen


def test_every_config_field_is_in_the_generated_reference(site: Path) -> None:
    page = (site / "configuration-reference" / "index.html").read_text(encoding="utf-8")
    listed = re.findall(r"<code>([a-z_]+(?:\.[^<]*)?)</code>", page)
    tails = {path.split(" ")[0].rsplit(".", 1)[-1].removesuffix("[]") for path in listed}
    missing = [f"{model.__name__}.{name}" for model in reachable_models() for name in model.model_fields
               if name not in tails]
    assert not missing
    assert len(reachable_models()) > 20  # the walk above really reached the nested models


def test_every_config_note_names_a_real_field() -> None:
    hooks = load_hooks()
    fields = {f"{cls.__name__}.{name}" for model in reachable_models() for cls in model.__mro__
              if isinstance(cls, type) and issubclass(cls, BaseModel) for name in model.model_fields}
    assert set(hooks.NOTES) <= fields, sorted(set(hooks.NOTES) - fields)


def test_every_metric_is_in_the_one_metrics_reference() -> None:
    source = (ROOT / "gateway" / "metrics.py").read_text(encoding="utf-8")
    names = set(re.findall(r'"(gateway_[a-z_]+)"', source))
    reference = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    assert len(names) > 20
    assert [name for name in sorted(names) if f"`{name}" not in reference] == []


def test_the_readmes_first_real_provider_is_the_shipped_config_uncommented() -> None:
    remaining = 0
    lines = []
    for line in (ROOT / "config" / "gateway.yaml").read_text().splitlines():
        if line.startswith(("  # openai:", "  # gpt-4o-mini:")):
            remaining = 3 if "openai:" in line else 5
        if remaining:
            line, remaining = line.replace("# ", "", 1), remaining - 1
        lines.append(line)
    config = parse_config("\n".join(lines), env={"OPENAI_API_KEY": "sk-x"})
    text = README.read_text(encoding="utf-8")
    (example,) = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)\n```", text, re.S)]
    assert set(example["providers"]) <= set(config.providers)
    assert set(example["models"]) <= set(config.models)
    assert config.models["gpt-4o-mini"].deployments[0].provider == "openai"
