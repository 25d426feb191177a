"""Two command processors in one consumer group, one stalled past its poll interval
and one frozen past its session timeout: every command is still decided once."""

import asyncio
import signal
import time
from collections import Counter
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from domain.showtime import Showtime
from infra.adapters import kafka
from infra.adapters.event_store import (
    EventStoreReader,
    epoch_positions_name,
    postgres_env,
    read_epoch,
)
from infra.adapters.settings import Settings
from tests.e2e.conftest import Stack, schedule_showtime, wait_for, wait_for_showtime

pytestmark = pytest.mark.e2e

SESSION_TIMEOUT_S = 10  # the processors' default session timeout


def send_bookings(stack: Stack, showtime_id: str, seats: list[str]) -> list[str]:
    """Book each seat in its own request without waiting; return the booking ids."""
    booking_ids = []
    for seat in seats:
        body = {"showtimeId": showtime_id, "seats": [seat], "paymentMethod": "card"}
        response = httpx.post(f"{stack.api}/book-tickets", json=body, timeout=30)
        assert response.status_code == 202, response.text
        booking_ids.append(response.json()["bookingId"])
    return booking_ids


def decisions(settings: Settings, showtime_id: str) -> Counter[str]:
    """Count the stored decisions per booking id."""
    reader = EventStoreReader(env=postgres_env(settings.require("POSTGRES_URL")))
    try:
        events = reader.repository.event_store.get(UUID(showtime_id))
        return Counter(
            e.booking_id for e in events if not isinstance(e, Showtime.Scheduled)
        )
    finally:
        reader.close()


def stored_and_end_offsets(settings: Settings) -> tuple[int, int]:
    """Return the commands decided per stored positions and the commands sent."""
    topic = settings.topic(kafka.COMMANDS_TOPIC)
    reader = EventStoreReader(env=postgres_env(settings.require("POSTGRES_URL")))
    stored = 0
    try:
        for partition in range(settings.COMMAND_PARTITIONS):
            name = f"{topic}.{partition}"
            epoch = read_epoch(reader.recorder, name)
            position = reader.max_tracking_id(epoch_positions_name(name, epoch))
            stored += 0 if position is None else position + 1
    finally:
        reader.close()
    return stored, asyncio.run(total_end_offset(settings, topic))


async def total_end_offset(settings: Settings, topic: str) -> int:
    """Return the number of records ever written to ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in range(settings.COMMAND_PARTITIONS)
        ]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def test_rebalances_decide_each_command_once(
    stack: Stack, settings: Settings, catalog_movies: list[UUID]
) -> None:
    showtime_id = schedule_showtime(settings, catalog_movies[3], hours=50)
    wait_for_showtime(stack, showtime_id)
    slow = {
        "BOXOFFICE_PROCESSOR_DEBUG_DELAY_MS": "8000",
        "BOXOFFICE_KAFKA_MAX_POLL_INTERVAL_MS": "4000",
    }
    stack.start("processor-slow", worker="processor", env=slow)
    time.sleep(5)  # let the group give the new member its partitions
    seats = [f"{row}{n}" for row in "ABCDEFGHI" for n in range(1, 11)]

    booking_ids = send_bookings(stack, showtime_id, seats[:30])
    stack.send_signal("processor", signal.SIGSTOP)
    booking_ids += send_bookings(stack, showtime_id, seats[30:60])
    time.sleep(SESSION_TIMEOUT_S + 4)
    stack.send_signal("processor", signal.SIGCONT)
    booking_ids += send_bookings(stack, showtime_id, seats[60:])

    wait_for(
        lambda: set(decisions(settings, showtime_id)) == set(booking_ids),
        120,
        "not every command was decided",
    )
    time.sleep(3)  # a late duplicate write would land in this window
    counts = decisions(settings, showtime_id)
    assert set(counts.values()) == {1}
    assert len(counts) == len(seats)
    stored, written = stored_and_end_offsets(settings)
    assert stored == written
    assert stack.log("processor").count("partitions assigned") >= 2
    assert "test hook" in stack.log("processor-slow")
