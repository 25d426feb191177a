"""Strict parsing of JSON request bodies.

Python's json module accepts the literals NaN, Infinity and -Infinity, turns 1e309
into infinity, raises a plain ValueError for integers of more than 4300 digits and
RecursionError for deeply nested arrays. FastAPI responds to the plain errors with 400
and passes the non-finite floats on to validation. This module parses bodies first
and rejects every such body with a 422 that names the problem and where it is.
"""

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from read_api.errors import validation_error


class NonFiniteNumber:
    """Placeholder for a NaN or infinite number found while parsing a body."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def parse_json_body(body: bytes) -> Any:
    """Parse a request body as JSON, raising a 422 RequestValidationError when invalid.

    The error names the literal or number at fault and its location in the body:
    the byte offset for syntax errors, the path of keys and indexes for NaN and
    infinite numbers.
    """
    non_finite: list[NonFiniteNumber] = []

    def parse_constant(text: str) -> NonFiniteNumber:
        non_finite.append(NonFiniteNumber(text, f"{text} is not valid JSON"))
        return non_finite[-1]

    def parse_float(text: str) -> float | NonFiniteNumber:
        number = float(text)
        if math.isfinite(number):
            return number
        reason = f"{text} is out of the range of a 64-bit float"
        non_finite.append(NonFiniteNumber(text, reason))
        return non_finite[-1]

    try:
        data = json.loads(body, parse_constant=parse_constant, parse_float=parse_float)
    except json.JSONDecodeError as error:
        msg = f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        raise validation_error(("body", error.pos), msg, {}, "json_invalid") from error
    except RecursionError as error:
        msg = "invalid JSON: arrays or objects are nested too deeply"
        raise validation_error(("body",), msg, {}, "json_invalid") from error
    except ValueError as error:
        # UnicodeDecodeError, or an integer longer than sys.get_int_max_str_digits().
        msg = f"invalid JSON: {error}"
        raise validation_error(("body",), msg, {}, "json_invalid") from error

    if non_finite:
        raise non_finite_error(data)
    return data


def non_finite_error(data: Any) -> RequestValidationError:
    """Build a 422 error with one entry for each NaN or infinite number in ``data``."""
    entries = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [(("body",), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, NonFiniteNumber):
            msg = (
                f"{value.reason}: send a finite number, or text where a field takes it"
            )
            entries.append(
                {"loc": loc, "msg": msg, "type": "finite_number", "input": value.text}
            )
        elif isinstance(value, dict):
            stack.extend(((*loc, key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*loc, index), item) for index, item in enumerate(value))

    entries.reverse()
    return RequestValidationError(entries)


def is_json_content_type(content_type: str | None) -> bool:
    """Return whether FastAPI parses a body with this Content-Type as JSON."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not media_type.startswith("application/"):
        return False
    return media_type == "application/json" or media_type.endswith("+json")


class StrictJSONRequest(Request):
    """A request whose ``json()`` parses with ``parse_json_body``."""

    async def json(self) -> Any:
        """Return the parsed body, raising a 422 error when it is not strict JSON."""
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route that parses JSON bodies strictly, before FastAPI's handler reads them.

    The body is parsed here, outside FastAPI's request handler, because that
    handler turns every exception other than JSONDecodeError, raised while it
    parses, into a 400.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so that it receives a StrictJSONRequest."""
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            strict = StrictJSONRequest(request.scope, request.receive)
            content_type = strict.headers.get("content-type")
            if has_body and is_json_content_type(content_type) and await strict.body():
                await strict.json()
            return await handler(strict)

        return strict_handler
