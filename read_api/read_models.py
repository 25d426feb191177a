"""Reads of the read models: Redis first, MongoDB when Redis misses or fails.

A Redis failure costs speed only: it is logged and the read goes to MongoDB. A
MongoDB failure raises ServiceUnavailableError, which becomes a 503 response.
"""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import orjson
from pydantic import ValidationError
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from domain.seating import SeatMap
from projections.views import (
    BOOKINGS,
    MOVIES,
    SHOWTIMES,
    TicketView,
    encode,
    movie_view,
    seat_map_view,
    showtime_view,
    ticket_view,
)
from read_api.deps import Resources, ScheduledShowtime
from read_api.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

# Failures of one service are logged at most once per this many seconds, with a
# count of the ones left out, so that an outage does not flood the log.
FAILURE_LOG_INTERVAL_S = 10.0


class FailureLog:
    """Logs failures of one service, at most once per interval, counting the rest."""

    def __init__(self, service: str, interval_s: float) -> None:
        self.service = service
        self.interval_s = interval_s
        self.last_logged = float("-inf")
        self.suppressed = 0

    def log(self, level: int, action: str, error: Exception) -> None:
        """Log one failure of ``action``, unless one was logged within the interval."""
        now = time.monotonic()
        if now - self.last_logged < self.interval_s:
            self.suppressed += 1
            return

        logger.log(
            level,
            "%s %s failed (%d similar failures not logged since the last): %r",
            self.service,
            action,
            self.suppressed,
            error,
        )
        self.last_logged = now
        self.suppressed = 0


redis_failures = FailureLog("Redis", FAILURE_LOG_INTERVAL_S)
mongo_failures = FailureLog("MongoDB", FAILURE_LOG_INTERVAL_S)


async def cached_bytes(resources: Resources, key: str) -> bytes | None:
    """Return the bytes stored under ``key`` in Redis, or None when absent or failed."""
    try:
        value = await resources.redis.get(key)
    except RedisError as error:
        redis_failures.log(
            logging.WARNING, f"GET {key}, reading MongoDB instead", error
        )
        return None
    # The client is made without decode_responses, so GET returns bytes.
    return cast(bytes | None, value)


async def cache_bytes(resources: Resources, key: str, value: bytes, ttl_s: int) -> None:
    """Store ``value`` under ``key`` for ``ttl_s`` seconds, only logging a failure."""
    try:
        await resources.redis.set(key, value, ex=ttl_s)
    except RedisError as error:
        redis_failures.log(logging.WARNING, f"SET {key}", error)


async def find_document(
    resources: Resources,
    collection: str,
    document_id: str,
    projection: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Return one MongoDB document by id, or None when there is none."""
    try:
        document: dict[str, Any] | None = await resources.db[collection].find_one(
            {"_id": document_id}, projection
        )
    except PyMongoError as error:
        raise mongo_unavailable(f"find {collection} {document_id}", error) from error
    return document


async def find_documents(
    resources: Resources,
    collection: str,
    query: Mapping[str, Any],
    sort: list[tuple[str, int]],
    skip: int,
    limit: int,
) -> list[dict[str, Any]]:
    """Return one page of the documents that match ``query``, in ``sort`` order."""
    try:
        cursor = resources.db[collection].find(query, sort=sort, skip=skip, limit=limit)
        documents: list[dict[str, Any]] = await cursor.to_list()
    except PyMongoError as error:
        raise mongo_unavailable(f"find in {collection}", error) from error
    return documents


async def count_documents(
    resources: Resources, collection: str, query: Mapping[str, Any]
) -> int:
    """Return how many documents match ``query``."""
    try:
        count: int = await resources.db[collection].count_documents(query)
    except PyMongoError as error:
        raise mongo_unavailable(f"count in {collection}", error) from error
    return count


def mongo_unavailable(action: str, error: PyMongoError) -> ServiceUnavailableError:
    """Log a failed MongoDB call and build the 503 error that reports it."""
    mongo_failures.log(logging.ERROR, action, error)
    detail = "the read-model database (MongoDB) is unavailable: retry later"
    return ServiceUnavailableError(detail, headers={"Retry-After": "1"})


# Locks of the list queries being run now, by Redis key.
QUERY_LOCKS: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


async def cached_query(
    resources: Resources,
    collection: str,
    query: str,
    ttl_s: int,
    run_query: Callable[[], Awaitable[bytes]],
) -> bytes:
    """Return the encoded result of a list query, from Redis when it is cached there.

    Results are stored under the collection's generation, a counter the projectors
    increase whenever the collection changes, so a change makes every cached result
    of that collection unreachable at once. When Redis fails, queries run uncached.
    """
    generation = await read_generation(resources, collection)
    if generation is None:
        return await run_query()

    key = resources.keys.query(collection, generation, query)
    cached = await cached_bytes(resources, key)
    if cached is not None:
        return cached

    # One query per key and process fills the cache. Without the lock, every
    # request that arrives while a popular page is missing runs the same MongoDB
    # query, and 32 at once were measured to take 8 s instead of 0.24 s.
    async with QUERY_LOCKS[key]:
        cached = await cached_bytes(resources, key)
        if cached is not None:
            return cached
        result = await run_query()
        await cache_bytes(resources, key, result, ttl_s)
    lock = QUERY_LOCKS.get(key)
    if lock is not None and not lock.locked():
        del QUERY_LOCKS[key]
    return result


async def read_generation(resources: Resources, collection: str) -> int | None:
    """Return the generation of ``collection``, or None when Redis cannot tell."""
    key = resources.keys.generation(collection)
    raw = await cached_bytes(resources, key)
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        logger.warning(
            "Redis key %s is %r, not an integer, so query results are not cached",
            key,
            raw,
        )
        return None


async def movie_bytes(resources: Resources, movie_id: str) -> bytes | None:
    """Return a movie's encoded MovieView, or None when the movie is unknown."""
    cached = await cached_bytes(resources, resources.keys.movie(movie_id))
    if cached is not None:
        return cached

    document = await find_document(resources, MOVIES, movie_id)
    return encode(movie_view(document)) if document is not None else None


async def showtime_bytes(resources: Resources, showtime_id: str) -> bytes | None:
    """Return a showtime's encoded ShowtimeView, or None when it is unknown."""
    document = await find_document(resources, SHOWTIMES, showtime_id)
    return encode(showtime_view(document)) if document is not None else None


async def seat_map_bytes(resources: Resources, showtime_id: str) -> bytes | None:
    """Return a showtime's encoded SeatMapView, or None when it is unknown.

    A seat map built from MongoDB is not written back to Redis: the projector
    writes there, and a slow write from here could replace a newer seat map.
    """
    cached = await cached_bytes(resources, resources.keys.seat_map(showtime_id))
    if cached is not None:
        return cached

    document = await find_document(resources, SHOWTIMES, showtime_id)
    return encode(seat_map_view(document)) if document is not None else None


async def ticket_bytes(
    resources: Resources, booking_id: str, check_store: bool = True
) -> bytes | None:
    """Return a booking's encoded TicketView, or None when the booking is unknown.

    Redis stores the ticket from the moment the API accepts the booking, first as
    pending, and the projectors replace it with the outcome. Unless ``check_store`` is
    false, a pending ticket is checked against MongoDB, in case the projector's
    Redis write was lost.
    """
    cached = await cached_bytes(resources, resources.keys.ticket(booking_id))
    if cached is not None and not is_pending(cached):
        return cached
    if not check_store:
        return cached

    try:
        document = await find_document(resources, BOOKINGS, booking_id)
    except ServiceUnavailableError:
        if cached is None:
            raise
        return cached
    if document is None:
        return cached
    return encode(ticket_view(document))


async def find_ticket(
    resources: Resources, booking_id: str, check_store: bool = True
) -> TicketView | None:
    """Return a booking's TicketView, or None when the booking is unknown."""
    raw = await ticket_bytes(resources, booking_id, check_store)
    if raw is None:
        return None
    try:
        return TicketView.model_validate_json(raw)
    except ValidationError as error:
        logger.warning(
            "ticket of booking %s is not a TicketView: %s", booking_id, error
        )
        return None


def is_pending(encoded_ticket: bytes) -> bool:
    """Return whether an encoded TicketView is pending, or too broken to tell."""
    try:
        ticket = orjson.loads(encoded_ticket)
    except orjson.JSONDecodeError:
        return True
    return not isinstance(ticket, dict) or ticket.get("status") == "pending"


async def find_scheduled_showtime(
    resources: Resources, showtime_id: str
) -> ScheduledShowtime | None:
    """Return a showtime's fixed facts and seat map, or None when it is unknown."""
    showtime = resources.showtimes.get(showtime_id)
    if showtime is not None:
        return showtime

    fields = {"movieId": 1, "startsAt": 1, "auditoriumName": 1, "rows": 1}
    document = await find_document(resources, SHOWTIMES, showtime_id, fields)
    if document is None:
        return None
    rows = tuple((label, layout) for label, layout in document["rows"])
    showtime = ScheduledShowtime(
        showtime_id=showtime_id,
        movie_id=document["movieId"],
        starts_at=document["startsAt"],
        auditorium_name=document["auditoriumName"],
        seat_map=SeatMap(rows),
    )
    resources.showtimes[showtime_id] = showtime
    return showtime
