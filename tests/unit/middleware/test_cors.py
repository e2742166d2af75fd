"""The CORS policy: which origins, methods and headers it allows, and what it answers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import CorsConfig
from gateway.middleware.cors import CorsPolicy


def policy(**options: object) -> CorsPolicy:
    return CorsPolicy(CorsConfig.model_validate({"allow_origins": ["https://a.example"], **options}))


def test_listed_origins_only() -> None:
    p = policy()
    assert p.allows(b"https://a.example") and not p.allows(b"https://b.example")
    assert dict(p.response_headers(b"https://a.example"))[b"access-control-allow-origin"] == b"https://a.example"


def test_any_origin_answers_a_star_without_vary() -> None:
    p = policy(allow_origins=["*"])
    headers = dict(p.response_headers(b"https://z.example"))
    assert headers[b"access-control-allow-origin"] == b"*" and b"vary" not in headers


def test_preflight_checks_method_and_headers() -> None:
    p = policy()
    assert p.preflight(b"https://a.example", b"post", b"Authorization, content-type") is not None
    assert p.preflight(b"https://a.example", b"PUT", None) is None
    assert p.preflight(b"https://a.example", b"POST", b"x-other") is None
    echoed = dict(policy(allow_headers=["*"]).preflight(b"https://a.example", b"POST", b"x-other") or [])
    assert echoed[b"access-control-allow-headers"] == b"x-other"


def test_credentials_with_any_origin_is_refused_at_load() -> None:
    with pytest.raises(ValidationError):
        policy(allow_origins=["*"], allow_credentials=True)
