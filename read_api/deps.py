"""The clients the API shares between requests, and the dependencies routes declare."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated
from uuid import UUID

import redis.asyncio
from aiokafka import AIOKafkaProducer
from fastapi import Depends, Header, Path, Query, Request
from pymongo.asynchronous.database import AsyncDatabase

from domain.seating import SeatMap
from infra.adapters.cache import Keys
from infra.adapters.settings import Settings
from read_api.body import IDEMPOTENCY_KEY_MAX_CHARS, IDEMPOTENCY_KEY_PATTERN
from read_api.errors import validation_error

# The largest API_MAX_WAIT_MS that Settings accepts. The configured one is checked
# in ``wait_ms``.
MAX_WAIT_MS = 60_000


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


def wait_ms(
    request: Request,
    wait: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_WAIT_MS,
            description="Milliseconds to wait for the outcome before the 202 response, "
            "at most the server's API_MAX_WAIT_MS",
        ),
    ] = None,
) -> int:
    """Return the requested wait in milliseconds, 0 when none was requested."""
    limit = request.app.state.settings.API_MAX_WAIT_MS
    if wait is not None and wait > limit:
        msg = f"Input should be less than or equal to {limit}"
        raise validation_error(("query", "wait"), msg, wait, "less_than_equal")
    return wait or 0


ResourcesDep = Annotated[Resources, Depends(get_resources)]
WaitMs = Annotated[int, Depends(wait_ms)]
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
