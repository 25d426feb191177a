"""The relay and the projector on real Kafka, PostgreSQL, MongoDB and Redis."""

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from commands.processor import CommandProcessor
from commands.relay import EventRelay
from domain.movie import Movie
from domain.showtime import Showtime
from infra.adapters import cache, kafka, mongo
from infra.adapters.lag import consumer_lag
from infra.adapters.settings import Settings
from infra.runtime.embedded import free_port
from projections.projector import Envelope, Projector, ProjectorRunner
from projections.views import BOOKINGS, MOVIES, SHOWTIMES
from tests.conftest import delete_test_data
from tests.integration.helpers import (
    booking,
    eventually,
    prepare_store,
    read_topic,
    running,
    schedule_showtime,
    send_commands,
    send_raw,
)

pytestmark = pytest.mark.integration


def find(settings: Settings, collection: str, doc_id: str) -> dict[str, Any] | None:
    """Return one read-model document."""
    db = mongo.database(settings)
    try:
        return db[collection].find_one({"_id": doc_id})
    finally:
        db.client.close()


def cached(settings: Settings, key: str) -> Any:
    """Return the decoded JSON stored at a Redis key, or None."""
    client = redis.Redis.from_url(settings.require("REDIS_URL"))
    try:
        value = client.get(key)
    finally:
        client.close()
    return json.loads(value) if value else None


async def wait_for_booking(settings: Settings, booking_id: str) -> dict[str, Any]:
    """Wait until the booking's outcome is in the read model."""
    return await eventually(lambda: find(settings, BOOKINGS, booking_id))


class TestProjector:
    async def test_bookings_reach_mongo_and_redis(self, settings: Settings) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        winner = booking(showtime_id, "A1", "A2")
        loser = booking(showtime_id, "A2", "A3")
        keys = cache.Keys(settings.redis_prefix)

        workers = (
            CommandProcessor(settings),
            EventRelay(settings),
            ProjectorRunner(settings),
        )
        async with running(*workers):
            await send_commands(settings, [winner, loser])
            rejected = await wait_for_booking(settings, loser.booking_id)
            confirmed = await wait_for_booking(settings, winner.booking_id)
            # Movie and showtime events travel in different partitions, in any order.
            titled = await eventually(
                lambda: (find(settings, SHOWTIMES, showtime_id) or {}).get("movieTitle")
            )

        assert titled == "The Matrix"
        assert confirmed["status"] == "confirmed"
        assert rejected["status"] == "rejected"
        assert rejected["rejectedSeats"] == ["A2"]
        assert rejected["seats"] == ["A2", "A3"]
        showtime = find(settings, SHOWTIMES, showtime_id)
        assert showtime is not None
        assert showtime["sold"] == {"A1": winner.booking_id, "A2": winner.booking_id}
        seat_map = cached(settings, keys.seat_map(showtime_id))
        states = {
            p["seat"]: p["state"] for row in seat_map["rows"] for p in row["positions"]
        }
        assert states["A1"] == "sold"
        assert states["A3"] == "free"
        assert seat_map["available"] == showtime["capacity"] - 2
        ticket = cached(settings, keys.ticket(loser.booking_id))
        assert ticket["status"] == "rejected"
        movie = find(settings, MOVIES, showtime["movieId"])
        assert movie is not None
        assert movie["title"] == "The Matrix"

    async def test_redelivered_events_apply_once(self, settings: Settings) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        first = booking(showtime_id, "B1")

        async with running(CommandProcessor(settings), EventRelay(settings)):
            await send_commands(settings, [first])
            published = await eventually(lambda: events_published(settings, 3))
        # Deliver every published event a second time, then cancel and project.
        await send_raw(
            settings,
            kafka.EVENTS_TOPIC,
            showtime_id.encode(),
            [r.value for r in published],
        )
        async with running(ProjectorRunner(settings)):
            doc = await wait_for_booking(settings, first.booking_id)
            await asyncio.sleep(1)

        assert doc["status"] == "confirmed"
        showtime = find(settings, SHOWTIMES, showtime_id)
        assert showtime is not None
        assert showtime["version"] == 2
        assert showtime["sold"] == {"B1": first.booking_id}

    async def test_missed_events_are_read_from_store(self, settings: Settings) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        commands = [booking(showtime_id, f"C{n}") for n in range(1, 4)]

        async with running(CommandProcessor(settings), EventRelay(settings)):
            await send_commands(settings, commands)
            published = await eventually(lambda: events_published(settings, 5))
        showtime_events = [
            r for r in published if json.loads(r.value)["originatorId"] == showtime_id
        ]
        # Only the last showtime event reaches a fresh namespace's projector.
        last = showtime_events[-1]
        fresh = settings.model_copy(update={"NAMESPACE": settings.NAMESPACE + "x"})
        await asyncio.to_thread(prepare_store, fresh)
        await send_raw(fresh, kafka.EVENTS_TOPIC, showtime_id.encode(), [last.value])
        async with running(ProjectorRunner(fresh)):
            doc = await eventually(
                lambda: (find(fresh, SHOWTIMES, showtime_id) or {}).get("version") == 4
            )

        showtime = find(fresh, SHOWTIMES, showtime_id)
        await asyncio.to_thread(delete_test_data, fresh)
        assert doc
        assert showtime is not None
        assert sorted(showtime["sold"]) == ["C1", "C2", "C3"]

    async def test_poison_events_are_passed_over(self, settings: Settings) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        key = showtime_id.encode()
        poison = [
            b"{not json",
            json.dumps(
                {"topic": "nowhere:Nothing", "originatorId": showtime_id}
            ).encode(),
            json.dumps(
                {
                    "topic": "domain.showtime:Showtime.SeatsBooked",
                    "originatorId": "not-a-uuid",
                    "originatorVersion": 2,
                    "state": {},
                }
            ).encode(),
        ]
        command = booking(showtime_id, "D1")

        async with running(ProjectorRunner(settings)):
            await send_raw(settings, kafka.EVENTS_TOPIC, key, poison)
            async with running(CommandProcessor(settings), EventRelay(settings)):
                await send_commands(settings, [command])
                doc = await wait_for_booking(settings, command.booking_id)
            dead = await eventually(lambda: dead_letters(settings, len(poison)))
            lag = await eventually(lambda: caught_up(settings))

        assert doc["status"] == "confirmed"
        assert len(dead) == 3
        assert lag == {"booking-processor": 0, "projectors": 0}
        assert all(json.loads(r.value)["reason"] for r in dead)


def events_published(settings: Settings, count: int) -> list[Any] | None:
    """Return the records of the events topic once there are at least ``count``."""
    records = asyncio.run(read_topic(settings, kafka.EVENTS_TOPIC))
    return records if len(records) >= count else None


def caught_up(settings: Settings) -> dict[str, int] | None:
    """Return the consumer lag once every group has caught up."""
    lag = asyncio.run(consumer_lag(settings))
    return lag if not any(lag.values()) else None


def dead_letters(settings: Settings, count: int) -> list[Any] | None:
    """Return the events' dead letters once there are at least ``count``."""
    records = asyncio.run(read_topic(settings, kafka.EVENTS_DEAD_LETTER_TOPIC))
    return records if len(records) >= count else None


def envelopes_of(*aggregates: Any) -> list[Envelope]:
    """Return the pending events of in-memory aggregates as published envelopes."""
    return [
        Envelope(str(event.originator_id), event.originator_version, event)
        for aggregate in aggregates
        for event in aggregate.collect_events()
    ]


def new_showtime(movie_id: str) -> Showtime:
    """Return an in-memory showtime in Hall 1 for ``movie_id``."""
    return Showtime(
        movie_id=movie_id,
        auditorium_id="hall-1",
        auditorium_name="Hall 1",
        starts_at=datetime(2030, 1, 1, 19, tzinfo=UTC),
        rows=[["A", "sssss|sssss"]],
    )


class TestProjectorBatch:
    def test_title_from_same_batch_is_used(self, settings: Settings) -> None:
        movie = Movie(details={"title": "Alien", "release_date": "1979-05-25"})
        showtime = new_showtime(str(movie.id))
        projector = Projector(settings)

        projector.apply_batch(envelopes_of(movie, showtime))

        doc = find(settings, SHOWTIMES, str(showtime.id))
        projector.close()
        assert doc is not None
        assert doc["movieTitle"] == "Alien"

    def test_read_models_advance_while_redis_is_down(self, settings: Settings) -> None:
        closed_port = free_port()
        offline = settings.model_copy(
            update={"REDIS_URL": f"redis://127.0.0.1:{closed_port}/0"}
        )
        showtime = new_showtime(str(uuid.uuid4()))
        showtime.decide_booking(
            str(uuid.uuid4()),
            ["A1"],
            [],
            "card",
            10,
            now=datetime(2029, 1, 1, tzinfo=UTC),
        )
        projector = Projector(offline)

        applied = projector.apply_batch(envelopes_of(showtime))

        stale = set(projector.stale_keys)
        projector.close()
        doc = find(settings, SHOWTIMES, str(showtime.id))
        assert applied == 2
        assert doc is not None
        assert list(doc["sold"]) == ["A1"]
        assert cache.Keys(offline.redis_prefix).seat_map(str(showtime.id)) in stale
