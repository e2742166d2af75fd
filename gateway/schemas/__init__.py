"""OpenAI wire types: request validation and the shapes the gateway produces."""

from gateway.schemas.openai import (
    Operation,
    validate_request,
)

__all__ = ["Operation", "validate_request"]
