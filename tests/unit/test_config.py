from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConfigError, load_config, parse_config, parse_duration

ROOT = Path(__file__).resolve().parents[2]

BASE = """
providers:
  openai: {type: openai, api_key: "${OPENAI_API_KEY}"}
  mock: {type: mock}
models:
  gpt-4o:
    deployments:
      - {provider: openai, model: gpt-4o}
      - {provider: mock, model: echo, weight: 2}
    timeout: 60s
    fallbacks: [demo]
  demo:
    deployments: [{provider: mock, model: echo}]
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=env if env is not None else {"OPENAI_API_KEY": "sk-x"})
    return caught.value.problems


def test_a_valid_config_loads_with_interpolated_secrets() -> None:
    config = parse_config(BASE, env={"OPENAI_API_KEY": "sk-secret"})
    provider = config.providers["openai"]
    assert provider.type == "openai"
    assert provider.api_key is not None and provider.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(config)
    assert config.models["gpt-4o"].timeout == 60.0
    assert config.models["gpt-4o"].deployments[1].id == "mock/echo"


def test_the_shipped_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "gateway.yaml", env={})
    assert not config.auth.required
    assert {d.provider for d in config.models["demo"].deployments} == {"mock"}


def test_unknown_provider_is_named_with_its_yaml_path() -> None:
    text = BASE.replace("{provider: mock, model: echo, weight: 2}", "{provider: azure-west, model: x}")
    assert "models.gpt-4o.deployments[1].provider: unknown provider 'azure-west'" in problems(text)


def test_every_problem_is_listed_at_once() -> None:
    text = """
server: {port: not-a-port, surprise: 1}
providers:
  p: {type: nonsense}
  q: {type: openai, api_key: "${MISSING_KEY}"}
models:
  a:
    deployments: [{provider: nope, model: m}]
    fallbacks: [b, ghost]
  b:
    deployments: [{provider: q, model: m}]
    fallbacks: [a]
    timeout: forever
"""
    found = problems(text, env={})
    assert any(p.startswith("server.port:") for p in found)
    assert "server.surprise: unknown field" in found
    assert any(p.startswith("providers.p") and "unknown provider type" in p for p in found)
    assert "providers.q.api_key: environment variable MISSING_KEY is not set" in found
    assert any(p.startswith("models.b.timeout:") for p in found)


def test_cross_references_and_cycles() -> None:
    text = """
providers: {m: {type: mock}}
models:
  a: {deployments: [{provider: m, model: x}], fallbacks: [b, ghost]}
  b: {deployments: [{provider: m, model: x}], fallbacks: [c]}
  c: {deployments: [{provider: m, model: x}, {provider: m, model: x}], fallbacks: [a, c]}
"""
    found = problems(text)
    assert "models.a.fallbacks[1]: unknown model alias 'ghost'" in found
    assert "models.c.fallbacks[1]: an alias cannot fall back to itself" in found
    assert any("cycle a -> b -> c -> a" in p for p in found)
    assert any(p.startswith("models.c.deployments[1]: duplicate deployment") for p in found)


def test_keys_need_exactly_one_secret_form_and_known_models() -> None:
    digest = hashlib.sha256(b"k").hexdigest()
    text = BASE + f"""
auth:
  keys:
    - {{name: a, key: "${{A_KEY}}", key_sha256: {digest}}}
    - {{name: b}}
    - {{name: d, key_sha256: {digest}, models: [gpt-4o, gpt-5]}}
    - {{name: d, key: k}}
"""
    found = problems(text, env={"OPENAI_API_KEY": "x", "A_KEY": "a"})
    assert "auth.keys[0]: give exactly one of 'key' or 'key_sha256'" in found
    assert "auth.keys[1]: give exactly one of 'key' or 'key_sha256'" in found
    assert "auth.keys[2].models[1]: unknown model alias 'gpt-5'; did you mean 'gpt-4o'?" in found
    assert "auth.keys[3].name: duplicate key name 'd'" in found
    assert "auth.keys[3]: the same key is declared twice" in found
    malformed = problems(BASE + "auth: {keys: [{name: c, key_sha256: nothex}]}")
    assert malformed == ["auth.keys[0].key_sha256: key_sha256 must be 64 hex characters (the SHA-256 of the key)"]


def test_env_defaults_and_invalid_yaml() -> None:
    config = parse_config("server: {port: '${PORT:-9090}', host: '${HOST:-0.0.0.0}'}", env={"HOST": ""})
    assert config.server.port == 9090
    assert config.server.host == "0.0.0.0"
    assert problems("models: [unclosed", env={})[0].startswith("<config>: line")
    assert problems("- a list", env={}) == ["<config>: the top level must be a mapping"]


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600),
                                               ("2", 2), (1.5, 1.5), ("0.25s", 0.25)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@given(st.one_of(st.text().filter(lambda s: not s.strip().replace(".", "", 1).isdigit()), st.booleans()))
def test_durations_refuse_everything_else(value: object) -> None:
    if isinstance(value, str) and any(value.strip().endswith(u) and value.strip()[: -len(u)].strip()
                                      .replace(".", "", 1).isdigit() for u in ("ms", "s", "m", "h")):
        return  # a real duration, generated by chance
    with pytest.raises(ValueError):
        parse_duration(value)


def test_config_check_command(tmp_path: Path) -> None:
    good = subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(ROOT / "config" / "gateway.yaml")],
                          capture_output=True, text=True, cwd=ROOT)
    assert good.returncode == 0, good.stderr
    assert "ok" in good.stdout
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(BASE.replace("{provider: mock, model: echo, weight: 2}", "{provider: azure-west, model: x}"))
    bad = subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(bad_file)],
                         capture_output=True, text=True, cwd=ROOT, env={"OPENAI_API_KEY": "x", "PATH": ""})
    assert bad.returncode == 1
    assert "models.gpt-4o.deployments[1].provider: unknown provider 'azure-west'" in bad.stderr


def test_replica_acks_need_a_replicated_redis() -> None:
    ok = parse_config(BASE + 'store: {redis_url: "redis+sentinel://s1:26379,s2:26379/main", replica_acks: 2}\n',
                      env={"OPENAI_API_KEY": "sk-x"})
    assert ok.store.replica_acks == 2
    assert any("replica_acks needs redis_url" in p for p in problems(BASE + "store: {replica_acks: 1}\n"))
    for store in ('{redis_url: "redis-cluster://a:7000", replica_acks: 1}',
                  '{redis_url: "redis://a:7000", cluster: true, replica_acks: 1}'):
        assert any("replica_acks is for a single Redis or Sentinel" in p for p in problems(BASE + f"store: {store}\n"))
    assert any("replica_acks" in p for p in problems(BASE + 'store: {redis_url: "redis://a", replica_acks: -1}\n'))


def test_config_check_suggests_the_name_meant(tmp_path: Path) -> None:
    text = """
server: {prot: 8080}
providers:
  openai: {type: openai, api_kye: x}
  mock: {type: mokc}
"""
    path = tmp_path / "typos.yaml"
    path.write_text(text)
    found = subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(path)],
                           capture_output=True, text=True, cwd=ROOT)
    assert found.returncode == 1
    assert "typos.yaml: 3 problems\n" in found.stderr
    assert "server.prot: unknown field; did you mean 'port'?" in found.stderr
    assert "providers.openai.api_kye: unknown field; did you mean 'api_key'?" in found.stderr
    assert "providers.mock: unknown provider type 'mokc'; did you mean 'mock'?" in found.stderr
    names = problems(BASE.replace("{provider: mock, model: echo, weight: 2}", "{provider: mokc, model: x}")
                     + "  other: {deployments: [{provider: mock, model: y}], fallbacks: [gpt4o]}\n",
                     env={"OPENAI_API_KEY": "x"})
    assert "models.gpt-4o.deployments[1].provider: unknown provider 'mokc'; did you mean 'mock'?" in names
    assert "models.other.fallbacks[0]: unknown model alias 'gpt4o'; did you mean 'gpt-4o'?" in names
    assert not any("did you mean" in p for p in problems(BASE + "server: {zzzz: 1}\n", env={"OPENAI_API_KEY": "x"}))


def test_secrets_from_mounted_files_lose_their_trailing_newline() -> None:
    config = parse_config(BASE + 'auth: {master_key: " mk-1\\n", keys: [{name: a, key: "sk-a\\n"}]}\n',
                          env={"OPENAI_API_KEY": "sk-x\n"})
    openai_key = config.providers["openai"].api_key  # type: ignore[union-attr]
    assert openai_key is not None and openai_key.get_secret_value() == "sk-x"
    assert config.auth.master_key is not None and config.auth.master_key.get_secret_value() == "mk-1"
    assert config.auth.keys[0].key is not None and config.auth.keys[0].key.get_secret_value() == "sk-a"


@pytest.mark.parametrize("value", ["sk-x\r\nx-injected: 1", "sk\nx", "sk\0x"])
def test_a_secret_or_header_value_with_a_line_break_inside_is_refused(value: str) -> None:
    listed = problems(BASE, env={"OPENAI_API_KEY": value})
    assert any(p.endswith("api_key: must not contain a line break or NUL") for p in listed), listed
    text = BASE.replace('api_key: "${OPENAI_API_KEY}"', 'api_key: k, headers: {x-team: "${OPENAI_API_KEY}"}')
    listed = problems(text, env={"OPENAI_API_KEY": value})
    assert any(p.endswith("headers.x-team: must not contain a line break or NUL") for p in listed), listed


@pytest.mark.parametrize(("proxy", "accepted"), [
    ("http://proxy.corp:3128", True), ("proxy.corp:3128", True), ("http://u:p@proxy:8080", True),
    ("direct", True), ("https://proxy:443", False), ("socks5://proxy:1080", False),
])
def test_provider_proxy_setting(proxy: str, accepted: bool) -> None:
    text = BASE.replace('api_key: "${OPENAI_API_KEY}"', f'api_key: k, proxy: "{proxy}"')
    if accepted:
        assert parse_config(text, env={}).providers["openai"].proxy == proxy
    else:
        assert any(".proxy: an http:// proxy URL" in p for p in problems(text))


def test_connection_defaults() -> None:
    provider = parse_config(BASE, env={"OPENAI_API_KEY": "k"}).providers["openai"]
    assert (provider.pool_size, provider.idle_timeout, provider.proxy) == (2048, 4.0, None)
    assert (provider.max_response_bytes, provider.max_event_bytes) == (32 * 1024 * 1024, 4 * 1024 * 1024)


def test_stored_responses_settings() -> None:
    assert parse_config(BASE, env={"OPENAI_API_KEY": "k"}).responses.ttl == 86400.0
    config = parse_config(BASE + "responses: {ttl: 2h, max_response_bytes: 1048576}\n", env={"OPENAI_API_KEY": "k"})
    assert (config.responses.ttl, config.responses.max_response_bytes) == (7200.0, 1048576)
    with pytest.raises(ConfigError, match="responses"):
        parse_config(BASE + "responses: {max_chain: 0}\n", env={"OPENAI_API_KEY": "k"})
