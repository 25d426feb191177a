"""Errors the API raises and the one place that maps every error to an HTTP response.

Routes raise the ApiError subclasses below; the handlers installed by
``install_error_handlers`` turn them, request validation errors and unexpected
exceptions into JSON responses. Validation errors echo the rejected input, made
JSON-safe and shortened first, because Starlette's JSONResponse raises on NaN and on
lone surrogates, and a 60 KB input is no help in an error message.
"""

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)

# Inputs whose JSON text is longer than this are cut and end in "...".
MAX_INPUT_CHARS = 200
# Nested inputs are copied to this depth, and deeper values become "...".
MAX_INPUT_DEPTH = 8
# Lists and objects are copied up to this many items, and a longer list ends in a
# "..." item.
MAX_INPUT_ITEMS = 50


class ApiError(Exception):
    """Base of the errors that routes raise to respond with a status and a detail."""

    status_code = 500

    def __init__(
        self,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


class NotFoundError(ApiError):
    """Raised when the resource a path names does not exist."""

    status_code = 404


class ConflictError(ApiError):
    """Raised when a request conflicts with the current state of a booking."""

    status_code = 409


class UnsupportedMediaTypeError(ApiError):
    """Raised when a request body has a Content-Type other than JSON."""

    status_code = 415


class ServiceUnavailableError(ApiError):
    """Raised when a service the request needs (MongoDB, Kafka) cannot be reached."""

    status_code = 503


def validation_error(
    loc: Sequence[str | int], msg: str, input_value: Any, error_type: str
) -> RequestValidationError:
    """Build a 422 error with one entry, in the shape pydantic gives its own errors."""
    return RequestValidationError(
        [{"loc": tuple(loc), "msg": msg, "type": error_type, "input": input_value}]
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into JSON responses."""
    app.add_exception_handler(ApiError, handle_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(
        RequestValidationError,
        handle_validation_error,  # type: ignore[arg-type]
    )
    app.add_exception_handler(Exception, handle_unexpected_error)


async def handle_api_error(request: Request, error: ApiError) -> JSONResponse:
    """Return a JSON response with the error's status, detail and extra fields."""
    body = {"detail": error.detail, **error.extra}
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


async def handle_validation_error(
    request: Request, error: RequestValidationError
) -> JSONResponse:
    """Return a 422 response with each error's location, message, type and input."""
    detail = [validation_entry(entry) for entry in error.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


async def handle_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """Log an exception that no other handler took, and respond with 500."""
    logger.exception(
        "unexpected error on %s %s", request.method, request.url.path, exc_info=error
    )
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def validation_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Return a validation error entry with JSON-safe, shortened values."""
    error_type = entry.get("type", "value_error")
    msg = safe_text(str(entry.get("msg", "")))
    if error_type == "json_invalid":
        # FastAPI's own message is only "JSON decode error", so use the parser's.
        reason = (entry.get("ctx") or {}).get("error")
        if reason:
            msg = safe_text(f"invalid JSON: {reason}")
    return {
        "loc": [safe_loc_item(item) for item in entry.get("loc", ())],
        "msg": msg,
        "type": safe_text(str(error_type)),
        "input": json_safe(entry.get("input")),
    }


def safe_loc_item(item: Any) -> int | str:
    """Return one location step: a list index, or a field name made JSON-safe."""
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    return safe_text(str(item))[:MAX_INPUT_CHARS]


def json_safe(value: Any) -> Any:
    """Return ``value`` as plain JSON data, cut to MAX_INPUT_CHARS when encoded.

    Non-finite floats become the strings "NaN", "Infinity" and "-Infinity", bytes
    and lone surrogates are replaced, other objects become their ``str``. A long
    string is cut to the limit. A long list keeps the leading items that fit. An
    object whose JSON text is longer than the limit becomes that text, cut. All
    three then end in "...".
    """
    plain = plain_json(value, depth=0)
    if isinstance(plain, str):
        text = plain
    else:
        text = json.dumps(plain, ensure_ascii=False)
    if len(text) <= MAX_INPUT_CHARS:
        return plain
    if isinstance(plain, list):
        return cut_list(plain)
    return text[:MAX_INPUT_CHARS] + "..."


def cut_list(items: list[Any]) -> list[Any]:
    """Return the leading items whose JSON text fits in MAX_INPUT_CHARS, and "..."."""
    leading: list[Any] = []
    length = len('["..."]')
    for item in items:
        length += len(json.dumps(item, ensure_ascii=False)) + len(", ")
        if length > MAX_INPUT_CHARS:
            break
        leading.append(item)
    return [*leading, "..."]


def plain_json(value: Any, depth: int) -> Any:
    """Copy ``value`` into types that json.dumps encodes without raising."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return plain_int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else non_finite_name(value)
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, bytes | bytearray):
        return safe_text(bytes(value[: MAX_INPUT_CHARS * 4]).decode(errors="replace"))
    if depth >= MAX_INPUT_DEPTH:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:MAX_INPUT_ITEMS]
        return {safe_text(str(k)): plain_json(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        entries = list(value)
        copied = [plain_json(item, depth + 1) for item in entries[:MAX_INPUT_ITEMS]]
        if len(entries) > MAX_INPUT_ITEMS:
            copied.append("...")
        return copied
    return safe_text(str(value))


def plain_int(value: int) -> int | str:
    """Return an int, or a short description when it has too many digits to print."""
    try:
        str(value)
    except ValueError:
        # Python refuses to print ints of more than sys.get_int_max_str_digits() digits.
        return f"integer of about {int(value.bit_length() * math.log10(2))} digits"
    return value


def non_finite_name(value: float) -> str:
    """Return "NaN", "Infinity" or "-Infinity", as JavaScript spells them."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def safe_text(text: str) -> str:
    """Replace lone surrogates, which cannot be encoded as UTF-8, with "?"."""
    return text.encode("utf-8", errors="replace").decode("utf-8")
