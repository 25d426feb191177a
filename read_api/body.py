"""Request bodies and the response shapes that are the API's own, not read models."""

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from projections.views import TicketStatus, View

# The largest MAX_SEATS_PER_BOOKING that Settings accepts. The booking route rejects
# longer lists with the configured limit before the model validates them (see
# seat_checks.check_seat_list_lengths), so this cap only bounds validation where
# the model is used on its own.
MAX_SEAT_ENTRIES = 100
# The longest seat id is a two-letter row and a three-digit number, so longer
# entries are rejected by length first.
MAX_SEAT_ID_CHARS = 8

SeatIdText = Annotated[str, StringConstraints(max_length=MAX_SEAT_ID_CHARS)]
PaymentMethod = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
]
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:-]+$"
IDEMPOTENCY_KEY_MAX_CHARS = 100


class BookTicketsBody(BaseModel):
    """A request to book seats of one showtime, all of them or none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "showtimeId": "2f0c6a7e-1f8e-5f43-9d7c-6a3e6f1b9b10",
                    "seats": ["A1", "A2"],
                    "wheelchairSpaces": [],
                    "paymentMethod": "card",
                }
            ]
        },
    )

    showtime_id: UUID = Field(alias="showtimeId")
    seats: list[SeatIdText] = Field(
        max_length=MAX_SEAT_ENTRIES,
        description="Standard seat ids such as A1. May be empty "
        "when wheelchairSpaces is not. The two lists together may name at most "
        "the server's MAX_SEATS_PER_BOOKING ids (10 by default).",
    )
    wheelchair_spaces: list[SeatIdText] = Field(
        default_factory=list,
        alias="wheelchairSpaces",
        max_length=MAX_SEAT_ENTRIES,
        description="Wheelchair space ids, requested apart from ordinary seats",
    )
    payment_method: PaymentMethod = Field(alias="paymentMethod")


class CommandAccepted(View):
    """A command that Kafka accepted, with the ``location`` to poll for the outcome.

    ``status`` is the booking's status when the response was sent: "pending" for a
    new booking, and still "confirmed" for a cancellation that is not yet applied.
    """

    booking_id: str = Field(alias="bookingId")
    status: TicketStatus
    location: str


class CommandNotSent(View):
    """A command whose send to Kafka failed or timed out, so it may or may not exist."""

    detail: str
    booking_id: str = Field(alias="bookingId")


class ErrorMessage(BaseModel):
    """An error that is not a validation error."""

    detail: str


class Health(BaseModel):
    """The state of each service the API reads from, and whether all of them respond."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
