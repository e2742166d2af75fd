from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.errors import UpstreamError
from gateway.providers.redact import MIN_SECRET_CHARS, REDACTED, Redactor, build_redactor, config_secrets

CONFIG = """
store: {redis_url: "redis+sentinel://:sentinel-pass%21word@h1:26379,h2:26379/main?sentinel_password=sent-secret-77"}
auth:
  master_key: master-secret-000
  keys: [{name: app, key: app-key-secret-111}, {name: hashed, key_sha256: "HASH"}]
providers:
  aws: {type: bedrock, access_key_id: AKIAEXAMPLEKEYID, secret_access_key: aws-secret-access-key-222,
        session_token: aws-session-token-333}
  oai: {type: openai, api_key: sk-openai-444444, headers: {x-region: eu, authorization-extra: "Bearer tok-555555555"}}
models: {}
""".replace("HASH", "a" * 64)


def test_every_secret_of_the_config_is_known() -> None:
    secrets = set(config_secrets(parse_config(CONFIG, env={})))
    assert {"sentinel-pass!word", "sent-secret-77", "master-secret-000", "app-key-secret-111",
            "AKIAEXAMPLEKEYID", "aws-secret-access-key-222", "aws-session-token-333", "sk-openai-444444",
            "tok-555555555"} <= secrets


def test_short_values_are_not_treated_as_secrets() -> None:
    redactor = build_redactor(parse_config(CONFIG, env={}))
    assert redactor.text("region eu, key sk-openai-444444") == f"region eu, key {REDACTED}"


def test_a_secret_containing_another_is_replaced_whole() -> None:
    redactor = Redactor(["abcdefgh", "abcdefgh-and-more"])
    assert redactor.text("x abcdefgh-and-more y") == f"x {REDACTED} y"


def test_an_errors_text_fields_are_cleaned_and_the_body_before_parsing() -> None:
    redactor = Redactor(["secret-value-1"])
    error = redactor.error(UpstreamError("it was secret-value-1", status=400, param="secret-value-1", code="c"))
    assert (error.message, error.param, str(error)) == (f"it was {REDACTED}", REDACTED, f"it was {REDACTED}")
    assert redactor.body(b'{"m": "secret-value-1"}') == b'{"m": "' + REDACTED.encode() + b'"}'


def test_no_secrets_leaves_text_alone() -> None:
    assert Redactor([]).text("anything at all") == "anything at all"


# (A secret with a bracket could be found again across the marker the redactor leaves.)
_SECRETS = st.text(min_size=MIN_SECRET_CHARS).filter(lambda s: "[" not in s and "]" not in s and s != "REDACTED")


@given(st.text(), st.text(), _SECRETS)
def test_a_secret_anywhere_in_any_text_is_gone(before: str, after: str, secret: str) -> None:
    out = Redactor([secret]).text(before + secret + after)
    assert REDACTED in out
    assert secret not in out
