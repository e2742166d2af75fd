from __future__ import annotations

import hashlib

import pytest

from gateway.auth import Authenticator, FailureThrottle, presented_key, redact
from gateway.config import AuthThrottleConfig, parse_config
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


def test_failure_throttle_refuses_an_address_for_the_rest_of_its_window() -> None:
    now = [100.0]
    throttle = FailureThrottle(AuthThrottleConfig(failures=3, window=60), clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is None and not throttle.blocked
    now[0] = 110.0
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 50.0  # the window began at the first failure
    assert throttle.retry_after("10.0.0.2") is None
    now[0] = 160.0
    assert throttle.retry_after("10.0.0.1") is None and not throttle.blocked


def test_failure_throttle_starts_a_new_window_and_forgets_old_addresses() -> None:
    now = [0.0]
    throttle = FailureThrottle(AuthThrottleConfig(failures=2, window=10, max_addresses=2), clock=lambda: now[0])
    throttle.failed("a")
    now[0] = 11.0
    throttle.failed("a")  # the first failure's window is over: one failure in this one
    assert not throttle.blocked
    throttle.failed("b")
    throttle.failed("c")  # "a" is the oldest and is forgotten
    throttle.failed("a")
    assert not throttle.blocked


def test_failure_throttle_off() -> None:
    throttle = FailureThrottle(AuthThrottleConfig(failures=0))
    for _ in range(100):
        throttle.failed("a")
    assert not throttle.blocked
