"""Strict parsing of JSON request bodies.

Python's json module accepts the literals NaN, Infinity and -Infinity, turns 1e309
into infinity and keeps the last value of a repeated object key. For integers of
more than 4300 digits (Python's default limit) it raises a ValueError that suggests
``sys.set_int_max_str_digits()``, and for deeply nested arrays RecursionError.
FastAPI responds to the plain errors with 400 and passes the rest on to
validation. This module parses bodies first and rejects every such body with a 422
that names the problem and where it is. Bodies sent with a Content-Type other than
JSON get 415.
"""

import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from read_api.errors import UnsupportedMediaTypeError, json_safe, validation_error

SEND_FINITE = "send a finite number, or text where a field takes it"


class RejectedNumber:
    """Placeholder for a number found while parsing a body that cannot be accepted."""

    def __init__(self, text: str, msg: str, error_type: str) -> None:
        self.text = text
        self.msg = msg
        self.error_type = error_type

    def __str__(self) -> str:
        """Return the number as the body spells it, for echoing it in errors."""
        return self.text


class RepeatedKeys:
    """The keys that occur more than once in one JSON object, with all their values."""

    def __init__(self, obj: dict[str, Any], pairs: list[tuple[str, Any]]) -> None:
        # Holding ``obj`` keeps its id from being reused by a later object.
        self.obj = obj
        counts = Counter(key for key, _ in pairs)
        self.values = {
            key: [value for name, value in pairs if name == key]
            for key, count in counts.items()
            if count > 1
        }


def parse_json_body(body: bytes) -> Any:
    """Parse a request body as JSON, raising a 422 RequestValidationError when invalid.

    The error names the literal, number or key at fault and its location in the
    body: the byte offset for syntax errors, the path of keys and indexes for NaN
    and infinite numbers, integers that are too long and repeated keys.
    """
    rejected: list[RejectedNumber] = []
    repeated: dict[int, RepeatedKeys] = {}

    def parse_constant(text: str) -> RejectedNumber:
        msg = f"{text} is not valid JSON: {SEND_FINITE}"
        rejected.append(RejectedNumber(text, msg, "finite_number"))
        return rejected[-1]

    def parse_float(text: str) -> float | RejectedNumber:
        number = float(text)
        if math.isfinite(number):
            return number
        msg = f"{text} is out of the range of a 64-bit float: {SEND_FINITE}"
        rejected.append(RejectedNumber(text, msg, "finite_number"))
        return rejected[-1]

    def parse_int(text: str) -> int | RejectedNumber:
        digits = len(text.lstrip("-"))
        limit = sys.get_int_max_str_digits()
        if limit == 0 or digits <= limit:
            return int(text)
        msg = f"number has {digits} digits, more than the maximum of {limit}"
        rejected.append(RejectedNumber(text, msg, "int_parsing_size"))
        return rejected[-1]

    def build_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            repeated[id(obj)] = RepeatedKeys(obj, pairs)
        return obj

    try:
        data = json.loads(
            body,
            parse_constant=parse_constant,
            parse_float=parse_float,
            parse_int=parse_int,
            object_pairs_hook=build_object,
        )
    except json.JSONDecodeError as error:
        msg = f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        raise validation_error(("body", error.pos), msg, {}, "json_invalid") from error
    except RecursionError as error:
        msg = "invalid JSON: arrays or objects are nested too deeply"
        raise validation_error(("body",), msg, {}, "json_invalid") from error
    except ValueError as error:
        # UnicodeDecodeError: the body is not UTF-8, UTF-16 or UTF-32.
        msg = f"invalid JSON: {error}"
        raise validation_error(("body",), msg, {}, "json_invalid") from error

    if rejected or repeated:
        raise RequestValidationError(locate_problems(data, repeated))
    return data


def locate_problems(
    data: Any, repeated: dict[int, RepeatedKeys]
) -> list[dict[str, Any]]:
    """Return an error entry for each RejectedNumber and repeated key in ``data``.

    Entries are in document order. A rejected number that a repeated key
    overwrote is not in ``data``, so only the repeated key is reported for it.
    """
    entries: list[dict[str, Any]] = []
    # An explicit stack, because ``data`` may be nested almost as deeply as the
    # recursion limit allows.
    stack: list[tuple[tuple[str | int, ...], Any]] = [(("body",), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, RejectedNumber):
            entries.append(
                {
                    "loc": loc,
                    "msg": value.msg,
                    "type": value.error_type,
                    "input": value.text,
                }
            )
        elif isinstance(value, dict):
            if id(value) in repeated:
                entries.extend(repeated_key_entries(loc, repeated[id(value)]))
            children = [((*loc, key), item) for key, item in value.items()]
            stack.extend(reversed(children))
        elif isinstance(value, list):
            children = [((*loc, index), item) for index, item in enumerate(value)]
            stack.extend(reversed(children))
    return entries


def repeated_key_entries(
    loc: tuple[str | int, ...], keys: RepeatedKeys
) -> list[dict[str, Any]]:
    """Return one error entry per key that occurs more than once in an object."""
    return [
        {
            "loc": (*loc, key),
            "msg": f'key "{json_safe(key)}" occurs {len(values)} times in one '
            "object: send each key once",
            "type": "duplicate_key",
            "input": values,
        }
        for key, values in keys.values.items()
    ]


def is_json_content_type(content_type: str | None) -> bool:
    """Return whether FastAPI parses a body with this Content-Type as JSON."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not media_type.startswith("application/"):
        return False
    return media_type == "application/json" or media_type.endswith("+json")


def unsupported_media_type(content_type: str | None) -> UnsupportedMediaTypeError:
    """Build the 415 error for a body sent with ``content_type``, None when absent."""
    fix = "send Content-Type: application/json with a JSON body"
    if not content_type:
        return UnsupportedMediaTypeError(
            f"the request has no Content-Type header: {fix}"
        )
    return UnsupportedMediaTypeError(
        f"Content-Type {json_safe(content_type)} is not supported: {fix}"
    )


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
    parses, into a 400. A route that takes a body rejects a non-empty body with
    another Content-Type with 415, because FastAPI would pass it on to validation
    as a string. Routes without a body ignore whatever body is sent.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so that it receives a StrictJSONRequest."""
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            strict = StrictJSONRequest(request.scope, request.receive)
            if has_body and await strict.body():
                content_type = strict.headers.get("content-type")
                if not is_json_content_type(content_type):
                    raise unsupported_media_type(content_type)
                await strict.json()
            return await handler(strict)

        return strict_handler
