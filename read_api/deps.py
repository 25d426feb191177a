"""The clients the API shares between requests, and the dependencies routes declare."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated
from uuid import UUID

import redis.asyncio
from aiokafka import AIOKafkaProducer
from fastapi import Depends, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from pymongo.asynchronous.database import AsyncDatabase

from domain.seating import SeatMap
from infra.adapters.cache import Keys
from infra.adapters.settings import Settings
from read_api.body import IDEMPOTENCY_KEY_MAX_CHARS, IDEMPOTENCY_KEY_PATTERN


@dataclass(frozen=True)
class ScheduledShowtime:
    """The facts of a showtime that never change once it is scheduled."""

    showtime_id: str
    movie_id: str
    starts_at: datetime
    auditorium_name: str
    seat_map: SeatMap


@dataclass
class Resources:
    """The clients the lifespan opens, and the per-process caches routes share."""

    settings: Settings
    keys: Keys
    producer: AIOKafkaProducer
    redis: redis.asyncio.Redis
    db: AsyncDatabase
    # Showtimes by id. Their entries never go stale, and only showtimes found in
    # MongoDB are added, so the dict grows no larger than the showtimes collection.
    showtimes: dict[str, ScheduledShowtime] = field(default_factory=dict)


def get_resources(request: Request) -> Resources:
    """Return the clients that the lifespan stored on the app."""
    resources: Resources = request.app.state.resources
    return resources


def reject_repeated_query_parameters(request: Request) -> None:
    """Raise a 422 error for each query parameter that is given more than once.

    Every query parameter of this API takes a single value, and FastAPI would use
    only the last of several, so a repeat is rejected rather than half ignored.
    Names that no route declares are rejected too when repeated.
    """
    # NOTE: a route that declares a list-valued query parameter must be exempted.
    counts = Counter(name for name, _ in request.query_params.multi_items())
    errors = [
        {
            "loc": ("query", name),
            "msg": f"query parameter {name} is given {count} times: send it once",
            "type": "repeated_query_parameter",
            "input": request.query_params.getlist(name),
        }
        for name, count in counts.items()
        if count > 1
    ]
    if errors:
        raise RequestValidationError(errors)


ResourcesDep = Annotated[Resources, Depends(get_resources)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_CHARS,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Repeat a request with the same key to get the same booking",
    ),
]
MovieId = Annotated[UUID, Path(alias="movieId")]
ShowtimeId = Annotated[UUID, Path(alias="showtimeId")]
BookingId = Annotated[UUID, Path(alias="bookingId")]
