from __future__ import annotations

import hashlib

import pytest

from gateway.auth import Authenticator, presented_key, redact
from gateway.config import parse_config
from gateway.errors import AuthenticationError, PermissionDeniedError

KEY = "sk-team-key-0123456789abcdef"


def authenticator(required: bool = True) -> Authenticator:
    digest = hashlib.sha256(b"sk-hashed-key-0000000000000").hexdigest()
    config = parse_config(f"""
auth:
  required: {str(required).lower()}
  master_key: master-secret-123
  keys:
    - {{name: app, team: search, key: "{KEY}", models: [a], metadata: {{env: prod}}}}
    - {{name: hashed, key_sha256: {digest}}}
providers: {{m: {{type: mock}}}}
models: {{a: {{deployments: [{{provider: m, model: x}}]}}, b: {{deployments: [{{provider: m, model: x}}]}}}}
""", env={})
    return Authenticator(config.auth)


def test_bearer_and_api_key_headers_resolve_the_principal() -> None:
    auth = authenticator()
    principal = auth.authenticate({"authorization": f"Bearer {KEY}"})
    assert (principal.name, principal.team, principal.metadata) == ("app", "search", (("env", "prod"),))
    assert auth.authenticate({"api-key": "sk-hashed-key-0000000000000"}).name == "hashed"
    auth.authorize(principal, "a")
    with pytest.raises(PermissionDeniedError):
        auth.authorize(principal, "b")


def test_missing_and_wrong_keys_are_401_without_echoing_the_key() -> None:
    auth = authenticator()
    with pytest.raises(AuthenticationError) as missing:
        auth.authenticate({})
    assert missing.value.code == "missing_api_key"
    wrong = "sk-wrong-0123456789abcdefghij"
    with pytest.raises(AuthenticationError) as caught:
        auth.authenticate({"authorization": f"Bearer {wrong}"})
    assert wrong not in caught.value.message
    with pytest.raises(AuthenticationError):
        auth.authenticate({"authorization": f"Basic {KEY}"})


def test_demo_mode_lets_anyone_in_but_still_knows_declared_keys() -> None:
    auth = authenticator(required=False)
    assert auth.authenticate({}).name == "anonymous"
    assert auth.authenticate({"authorization": "Bearer whatever"}).name == "anonymous"
    assert auth.authenticate({"authorization": f"Bearer {KEY}"}).name == "app"


def test_master_key() -> None:
    auth = authenticator()
    assert auth.is_master({"authorization": "Bearer master-secret-123"})
    assert not auth.is_master({"authorization": f"Bearer {KEY}"})
    assert not auth.is_master({})


def test_helpers() -> None:
    assert presented_key({"authorization": "Bearer  abc "}) == "abc"
    assert presented_key({"api-key": "  "}) is None
    assert redact("short") == "***"
    assert redact("sk-0123456789abcdefghijkl") == "sk-***ijkl"
