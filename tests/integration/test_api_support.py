"""Helpers for the read API tests. This module contains no tests of its own.

The API runs in-process on httpx's ASGI transport against the session's real
servers (see tests/conftest.py): the machine's Redis, a Tansu broker and a
SecantusDB server. Each test module gets its own namespace, so its topics, Redis
keys and MongoDB database are its own, and they are removed at the end.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.database import Database

from domain.commands import Command, decode_command
from infra.adapters import cache, kafka, mongo
from infra.adapters.cache import Keys
from infra.adapters.settings import Settings
from projections.views import BOOKINGS, MOVIES, SHOWTIMES
from read_api.app import create_app

# A hall with an aisle in row A, a numbered gap at B5, twelve seats in row K and
# two wheelchair spaces (W1, W2) in row W.
HALL_ROWS = [
    ["A", "sssss|sssss"],
    ["B", "ssss.sssss"],
    ["K", "ssssssssssss"],
    ["W", "ww|ssss"],
]
HALL_CAPACITY = 10 + 9 + 12 + 6


@dataclass
class NamespaceStores:
    """A namespace's settings, with direct clients of its MongoDB and Redis."""

    settings: Settings
    database: Database
    redis: redis.Redis

    @property
    def keys(self) -> Keys:
        """Return the namespace's Redis key names."""
        return Keys(self.settings.redis_prefix)


@dataclass
class ApiStack(NamespaceStores):
    """A running API on a namespace, and a client that sends requests to it."""

    client: httpx.AsyncClient


@asynccontextmanager
async def open_stack(
    service_urls: dict[str, str], **overrides: Any
) -> AsyncIterator[ApiStack]:
    """Create the namespace's topics, run the API, and clear its data after."""
    settings = api_settings(service_urls, **overrides)
    await kafka.create_topics(settings)
    with namespace_stores(settings) as stores:
        async with running_api(settings) as client:
            yield ApiStack(settings, stores.database, stores.redis, client)


def api_settings(service_urls: dict[str, str], **overrides: Any) -> Settings:
    """Return settings for a fresh namespace on the session's servers."""
    namespace = f"api{uuid.uuid4().hex[:12]}"
    values: dict[str, Any] = {
        "REDIS_URL": service_urls["redis"],
        "KAFKA_BOOTSTRAP_SERVERS": service_urls["kafka"],
        "MONGODB_URL": service_urls["mongodb"],
        "MONGODB_DATABASE": namespace,
        "NAMESPACE": namespace,
        "COMMAND_PARTITIONS": 4,
        "EVENT_PARTITIONS": 4,
        "KAFKA_SEND_TIMEOUT_S": 5.0,
        "API_MAX_WAIT_MS": 3_000,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_api(
    settings: Settings, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client that sends requests to it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=raise_app_exceptions
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver"
        ) as client:
            yield client


@contextmanager
def namespace_stores(settings: Settings) -> Iterator[NamespaceStores]:
    """Yield clients of the namespace's MongoDB and Redis, and clear both after."""
    database = mongo.database(settings)
    redis_client = cache.client(settings)
    try:
        yield NamespaceStores(settings, database, redis_client)
    finally:
        keys = list(redis_client.scan_iter(match=f"{settings.redis_prefix}*"))
        if keys:
            redis_client.delete(*keys)
        redis_client.close()
        database.client.drop_database(settings.MONGODB_DATABASE)
        database.client.close()


def new_id() -> str:
    """Return a fresh UUID in its canonical text form."""
    return str(uuid.uuid4())


def seed_movie(stack: NamespaceStores, **fields: Any) -> dict[str, Any]:
    """Insert a movie document and bump the movies generation, as the projector does."""
    document: dict[str, Any] = {
        "_id": new_id(),
        "title": "Untitled",
        "releaseDate": "1999-03-31",
        "genre": "Drama",
        "runningTimeMin": 120,
        "director": "A. Director",
        "mpaaRating": "PG",
        "imdbRating": 7.5,
        "imdbVotes": 1000,
        "distributor": "Films Inc.",
        "version": 1,
    }
    document.update(fields)
    stack.database[MOVIES].insert_one(document)
    stack.redis.incr(stack.keys.generation(MOVIES))
    return document


def seed_showtime(stack: NamespaceStores, **fields: Any) -> dict[str, Any]:
    """Insert a showtime document and bump the showtimes generation."""
    starts_at = datetime(2031, 5, 1, 18, 0, tzinfo=UTC)
    document: dict[str, Any] = {
        "_id": new_id(),
        "movieId": new_id(),
        "movieTitle": "The Matrix",
        "auditoriumId": "hall-1",
        "auditoriumName": "Hall 1",
        "startsAt": starts_at,
        "localDate": "2031-05-01",
        "rows": HALL_ROWS,
        "sold": {},
        "capacity": HALL_CAPACITY,
        "version": 1,
    }
    document.update(fields)
    stack.database[SHOWTIMES].insert_one(document)
    stack.redis.incr(stack.keys.generation(SHOWTIMES))
    return document


def seed_booking(
    stack: NamespaceStores, showtime: dict[str, Any], status: str, **fields: Any
) -> dict[str, Any]:
    """Insert a booking document with ``status`` for seats A1 and A2 of ``showtime``."""
    document: dict[str, Any] = {
        "_id": new_id(),
        "status": status,
        "showtimeId": showtime["_id"],
        "seats": ["A1", "A2"],
        "wheelchairSpaces": [],
        "paymentMethod": "card",
        "reason": None,
        "reasonCode": None,
        "rejectedSeats": [],
        "movieId": showtime["movieId"],
        "startsAt": showtime["startsAt"],
        "auditoriumName": showtime["auditoriumName"],
        "updatedAt": datetime.now(UTC) - timedelta(minutes=1),
        "version": 2,
    }
    document.update(fields)
    stack.database[BOOKINGS].insert_one(document)
    return document


async def command_end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """Return the end offset of each partition of the command topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
    await consumer.start()
    try:
        topic = settings.topic(kafka.COMMANDS_TOPIC)
        partitions = [
            TopicPartition(topic, number)
            for number in range(settings.COMMAND_PARTITIONS)
        ]
        offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return offsets
    finally:
        await consumer.stop()


async def commands_since(
    settings: Settings, start: dict[TopicPartition, int]
) -> list[Command]:
    """Return the commands written to the command topic after the offsets ``start``."""
    end = await command_end_offsets(settings)
    wanted = sum(end[partition] - start[partition] for partition in end)
    if wanted == 0:
        return []

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(end))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        records = []
        while len(records) < wanted:
            batch = await consumer.getmany(timeout_ms=2_000)
            if not batch:
                break
            for partition, items in batch.items():
                records.extend(r for r in items if r.offset < end[partition])
        return [decode_command(record.value) for record in records]
    finally:
        await consumer.stop()


def booking_body(showtime_id: str, *seats: str, **fields: Any) -> dict[str, Any]:
    """Return a POST /book-tickets body for ``seats`` of a showtime."""
    body: dict[str, Any] = {
        "showtimeId": showtime_id,
        "seats": list(seats),
        "paymentMethod": "card",
    }
    body.update(fields)
    return body
