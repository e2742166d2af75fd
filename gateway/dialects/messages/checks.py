"""Validation errors in the wording of Anthropic's own (`messages.0.content: Field required`), carrying
the gateway's dotted `param` (`messages[0].content`) so logs and the OpenAI-shaped twin agree.

Two kinds of failure: a body Anthropic itself would refuse raises at once (`invalid`, `missing`); a
field the canonical form cannot carry (a server tool, a file id) is `Untranslatable`, collected by the
parser so a deployment that speaks Messages can still take the body as sent."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError


def anthropic_path(param: str) -> str:
    """`messages[0].content[1]` → `messages.0.content.1`, the way Anthropic's errors name fields."""
    return param.replace("[", ".").replace("]", "")


def missing(param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{anthropic_path(param)}: Field required", param=param,
                               code="missing_required_parameter")


def invalid(param: str, expected: str) -> InvalidRequestError:
    return InvalidRequestError(f"{anthropic_path(param)}: {expected}", param=param, code="invalid_value")


def untranslatable(param: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{anthropic_path(param)}: {what} cannot be translated for this model's provider; only a model served "
        "by an Anthropic provider accepts it.", param=param, code="unsupported_value")


class Untranslatable:
    """The first field of a request that the canonical form cannot carry (later ones are not needed:
    the client fixes one field at a time, as with any validation error)."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: InvalidRequestError | None = None

    def note(self, param: str, what: str) -> None:
        if self.error is None:
            self.error = untranslatable(param, what)


def obj(value: object, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(param, "Input should be a valid dictionary")
    return value


def string(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise invalid(param, "Input should be a valid string")
    return value


def integer(value: object, param: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(param, "Input should be a valid integer")
    if minimum is not None and value < minimum:
        raise invalid(param, f"Input should be greater than or equal to {minimum}")
    return value


def number(value: object, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(param, "Input should be a valid number")
    if not low <= value <= high:
        raise invalid(param, f"Input should be between {low:g} and {high:g}")
    return float(value)


def array(value: object, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(param, "Input should be a valid list")
    return value
