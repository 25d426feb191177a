"""Booking commands and their JSON form on the ``booking-commands`` topic.

A command is a request that the showtime may still reject. Each record on the topic
is one JSON object whose ``type`` names the command. The record key is the showtime
id, so all commands for one showtime are decided in order by one processor.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID


class CommandDecodeError(ValueError):
    """Raised when a record on the command topic is not a valid command."""


@dataclass(frozen=True)
class BookSeats:
    """Book these seats of a showtime, all of them or none."""

    booking_id: str
    showtime_id: str
    seats: list[str]
    payment_method: str
    wheelchair_spaces: list[str] = field(default_factory=list)
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CancelBooking:
    """Cancel a booking and release its seats."""

    booking_id: str
    showtime_id: str


Command = BookSeats | CancelBooking
COMMAND_TYPES: dict[str, type[BookSeats] | type[CancelBooking]] = {
    "BookSeats": BookSeats,
    "CancelBooking": CancelBooking,
}


def encode_command(command: Command) -> bytes:
    """Return the JSON bytes of a command, tagged with its type."""
    body = {"type": type(command).__name__, **asdict(command)}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_command(data: bytes | None) -> Command:
    """Parse a command record, raising CommandDecodeError that names the problem."""
    try:
        body = json.loads(data or b"", parse_constant=reject_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise CommandDecodeError(f"record is not valid JSON: {error}") from error
    except RecursionError as error:
        msg = "record nests JSON arrays or objects too deeply"
        raise CommandDecodeError(msg) from error
    if not isinstance(body, dict):
        raise CommandDecodeError(
            f"record is a JSON {type(body).__name__}, not an object"
        )

    kind = body.pop("type", None)
    command_class = COMMAND_TYPES.get(kind) if isinstance(kind, str) else None
    if command_class is None:
        raise CommandDecodeError(f"unknown command type {kind!r}")

    try:
        command = command_class(**body)
    except TypeError as error:
        raise CommandDecodeError(f"{kind} has wrong fields: {error}") from error
    check_field_types(command)
    return command


def reject_constant(name: str) -> Any:
    """Reject the NaN and Infinity literals that Python's json module accepts."""
    raise ValueError(f"{name} is not valid JSON")


def check_field_types(command: Command) -> None:
    """Raise CommandDecodeError when a decoded field has the wrong type."""
    for name in ("booking_id", "showtime_id"):
        value = getattr(command, name)
        if not isinstance(value, str) or not is_uuid(value):
            raise CommandDecodeError(f"{name} {value!r} is not a UUID")

    if isinstance(command, BookSeats):
        for name in ("seats", "wheelchair_spaces"):
            value = getattr(command, name)
            if not isinstance(value, list) or not all(
                isinstance(s, str) for s in value
            ):
                raise CommandDecodeError(f"{name} {value!r} is not a list of seat ids")
        if not isinstance(command.payment_method, str):
            raise CommandDecodeError(
                f"payment_method {command.payment_method!r} is not text"
            )
        key = command.idempotency_key
        if key is not None and not isinstance(key, str):
            raise CommandDecodeError(f"idempotency_key {key!r} is not text or null")


def is_uuid(value: str) -> bool:
    """Return whether ``value`` is a UUID in its canonical text form."""
    try:
        return str(UUID(value)) == value
    except ValueError:
        return False
