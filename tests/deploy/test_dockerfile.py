"""The Dockerfile, checked statically (no Docker daemon on the test machines): its instructions are
parsed and what docs/deployment.md promises is asserted — multi-stage, slim base, non-root USER,
HEALTHCHECK, `gateway serve` entrypoint, config at /etc/gateway/gateway.yaml, tiktoken encodings baked
in at build time; every file it copies exists and the build context (.dockerignore) lets it through."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Instruction:
    op: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions: comments dropped, `\\` continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        op, _, args = full.partition(" ")
        out.append(Instruction(op.upper(), args.strip()))
    assert not pending, "a continuation runs off the end of the file"
    return out


@pytest.fixture(scope="module")
def stages() -> dict[str, list[Instruction]]:
    instructions = parse((ROOT / "Dockerfile").read_text())
    result: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for ins in instructions:
        if ins.op == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", ins.args, re.I)
            assert m, f"every stage is named: FROM {ins.args}"
            current = result[m.group(2)] = [ins]
        elif current is not None:
            current.append(ins)
        else:
            assert ins.op == "ARG", f"{ins.op} before the first FROM"
    return result


def final(stages: dict[str, list[Instruction]]) -> list[Instruction]:
    return list(stages.values())[-1]


def ops(stage: list[Instruction], op: str) -> list[str]:
    return [i.args for i in stage if i.op == op]


def test_multi_stage_on_a_slim_base(stages: dict[str, list[Instruction]]) -> None:
    assert len(stages) >= 2
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert base and base.group(1).endswith("-slim")
    for stage in stages.values():
        assert stage[0].args.split()[0] == "${PYTHON_IMAGE}"
    runtime = final(stages)
    assert any(a.startswith("--from=build ") for a in ops(runtime, "COPY")), "the runtime copies the build's output"
    assert not any("pip install" in a for a in ops(runtime, "RUN")), "nothing is built in the runtime stage"


def test_runs_as_a_non_root_user(stages: dict[str, list[Instruction]]) -> None:
    users = ops(final(stages), "USER")
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric uid, so Kubernetes can verify runAsNonRoot"
    assert any(f"--uid {user}" in a for a in ops(final(stages), "RUN"))


def test_healthcheck_entrypoint_and_config_path(stages: dict[str, list[Instruction]]) -> None:
    runtime = final(stages)
    (health,) = ops(runtime, "HEALTHCHECK")
    assert "/healthz" in health and "CMD" in health
    (entrypoint,) = ops(runtime, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["gateway", "serve"]
    (cmd,) = ops(runtime, "CMD")
    assert json.loads(cmd) == ["--config", "/etc/gateway/gateway.yaml"]
    env = " ".join(ops(runtime, "ENV"))
    assert "GATEWAY_CONFIG=/etc/gateway/gateway.yaml" in env
    assert "GATEWAY_HOST=0.0.0.0" in env
    assert ops(runtime, "EXPOSE") == ["8080"]
    assert ops(runtime, "STOPSIGNAL") == ["SIGTERM"]


def test_tiktoken_encodings_are_baked_in(stages: dict[str, list[Instruction]]) -> None:
    build = stages["build"]
    runtime = final(stages)
    assert "TIKTOKEN_CACHE_DIR=/opt/tiktoken" in " ".join(ops(build, "ENV"))
    assert "TIKTOKEN_CACHE_DIR=/opt/tiktoken" in " ".join(ops(runtime, "ENV"))
    assert "tests/data/tiktoken/ /opt/tiktoken/" in ops(build, "COPY")
    assert "--from=build /opt/tiktoken /opt/tiktoken" in ops(runtime, "COPY")
    runs = " ".join(ops(build, "RUN"))
    assert "get_encoding('cl100k_base')" in runs
    # o200k_base is tried and its failure tolerated (offline builds).
    assert re.search(r"get_encoding\('o200k_base'\).*\|\|", runs)
    assert any(p.name != "README.md" for p in (ROOT / "tests/data/tiktoken").iterdir())


def ignored(path: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or fnmatch.fnmatch(path, "*/" + pat):
            result = not negate
    return result


def test_every_copied_file_exists_and_is_in_the_build_context(stages: dict[str, list[Instruction]]) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for stage in stages.values():
        for args in ops(stage, "COPY"):
            words = shlex.split(args)
            if any(w.startswith("--from=") for w in words):
                continue
            for source in [w for w in words if not w.startswith("--")][:-1]:
                path = source.rstrip("/")
                assert (ROOT / path).exists(), f"COPY {source}: no such file"
                assert not ignored(path, patterns), f"COPY {source}: excluded by .dockerignore"
                if (ROOT / path).is_dir():
                    for child in (ROOT / path).rglob("*"):
                        rel = str(child.relative_to(ROOT))
                        if child.is_file() and "__pycache__" not in rel:
                            assert not ignored(rel, patterns), f"{rel} is excluded by .dockerignore"
    assert ignored("tests/unit/test_config.py", patterns), "tests stay out of the image"


def test_every_docs_page_the_deployment_files_point_at_exists() -> None:
    files = [ROOT / "Dockerfile", *sorted((ROOT / "deploy").rglob("*.y*ml")), ROOT / "deploy/compose/nginx.conf"]
    pointed = {(path, page) for path in files for page in re.findall(r"docs/[\w./-]+\.md", path.read_text())}
    assert any(path.name == "Dockerfile" for path, _ in pointed), "the Dockerfile says where its docs are"
    for path, page in pointed:
        assert (ROOT / page).is_file(), f"{path.relative_to(ROOT)} points at {page}, which does not exist"
    for path in files:
        assert "README.md (" not in path.read_text(), f"{path.relative_to(ROOT)}: the README no longer holds that"
