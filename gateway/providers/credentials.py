"""Upstream authentication styles, kept apart from translation so one translator can be paired with
another auth style (Anthropic's format on Bedrock or Vertex, say)."""

from __future__ import annotations

import os
from typing import Protocol

from pydantic import SecretStr

from gateway.providers.base import UpstreamRequest


class Credentials(Protocol):
    def apply(self, request: UpstreamRequest) -> None: ...


class NoCredentials:
    def apply(self, request: UpstreamRequest) -> None:
        return None


class HeaderCredentials:
    """A fixed secret header: `Authorization: Bearer …`, `api-key: …`, `x-api-key: …`."""

    __slots__ = ("_name", "_value")

    def __init__(self, name: str, value: str) -> None:
        self._name = name
        self._value = value

    def apply(self, request: UpstreamRequest) -> None:
        request.headers[self._name] = self._value

    def __repr__(self) -> str:  # never show the secret
        return f"HeaderCredentials({self._name!r}, '***')"


def bearer(secret: SecretStr | None) -> Credentials:
    return HeaderCredentials("authorization", f"Bearer {secret.get_secret_value()}") if secret else NoCredentials()


def header(name: str, secret: SecretStr | None) -> Credentials:
    return HeaderCredentials(name, secret.get_secret_value()) if secret else NoCredentials()


def azure(api_key: SecretStr | None, ad_token: SecretStr | None) -> Credentials:
    """Azure OpenAI: the resource key as `api-key`, else an Entra ID token as `Authorization: Bearer`.
    When both are configured the key wins (it needs no refresh)."""
    if api_key:
        return header("api-key", api_key)
    return bearer(ad_token)


class SigV4Credentials:
    """AWS Signature Version 4, computed by botocore (an optional extra: `llm-gateway[bedrock]`).

    The translator puts the AWS service and region in `request.signing`; `apply` signs the method,
    URL, body and every header already set, then adds `Authorization`, `X-Amz-Date` and, for
    temporary credentials, `X-Amz-Security-Token`. Headers added after signing are not covered.
    The URL must be sent exactly as signed (already percent-encoded path, e.g. a model ARN).
    """

    __slots__ = ("_auth_cls", "_credentials", "_request_cls", "region", "service")

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str | None = None,
                 *, service: str = "bedrock", region: str = "us-east-1") -> None:
        try:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials as AWSCredentials
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise ValueError(
                "SigV4 signing (type: bedrock) needs botocore: install the 'bedrock' extra "
                "(pip install 'llm-gateway[bedrock]')") from None
        self._credentials = AWSCredentials(access_key_id, secret_access_key, session_token or None)
        self._auth_cls = SigV4Auth
        self._request_cls = AWSRequest
        self.service = service
        self.region = region

    @classmethod
    def from_config(cls, access_key_id: SecretStr | None, secret_access_key: SecretStr | None,
                    session_token: SecretStr | None, *, region: str, service: str = "bedrock",
                    env: dict[str, str] | None = None) -> SigV4Credentials:
        """Keys from the provider config, else the standard variables AWS_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (read once, when the config is loaded)."""
        source = os.environ if env is None else env
        if access_key_id and secret_access_key:
            key, secret = access_key_id.get_secret_value(), secret_access_key.get_secret_value()
            token = session_token.get_secret_value() if session_token else None
        else:
            key = source.get("AWS_ACCESS_KEY_ID", "")
            secret = source.get("AWS_SECRET_ACCESS_KEY", "")
            token = source.get("AWS_SESSION_TOKEN") or None
        if not key or not secret:
            raise ValueError("AWS credentials missing: set access_key_id and secret_access_key, or "
                             "the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables")
        return cls(key, secret, token, service=service, region=region)

    def apply(self, request: UpstreamRequest) -> None:
        service = request.signing.get("service", self.service)
        region = request.signing.get("region", self.region)
        aws = self._request_cls(method=request.method, url=request.url, data=request.body,
                                headers=dict(request.headers))
        self._auth_cls(self._credentials, service, region).add_auth(aws)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            value = aws.headers.get(name)
            if value is not None:
                request.headers[name.lower()] = value

    def __repr__(self) -> str:  # never show the secret
        return f"SigV4Credentials(service={self.service!r}, region={self.region!r}, '***')"
