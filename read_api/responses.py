"""Responses made of JSON bytes that are already encoded."""

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from read_api.body import ErrorMessage

JSON_MEDIA_TYPE = "application/json"


def json_response(
    body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Return a response that sends ``body`` as it is, typed as JSON."""
    return Response(body, status_code, headers, media_type=JSON_MEDIA_TYPE)


MONGODB_UNAVAILABLE = "MongoDB is unavailable"


def error_docs(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """Return OpenAPI ``responses`` for errors whose body is an ErrorMessage."""
    return {
        status: {"model": ErrorMessage, "description": description}
        for status, description in descriptions.items()
    }
