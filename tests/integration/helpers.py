"""Helpers for integration tests: run workers in-process and send commands."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from commands.catalog_import import Catalog
from commands.scheduling import DEMO_AUDITORIUMS, Scheduler
from domain.commands import BookSeats, Command, encode_command
from infra.adapters import kafka
from infra.adapters.event_store import create_tables, postgres_env
from infra.adapters.settings import Settings

FILM = {"Title": "The Matrix", "Release Date": "Mar 31 1999", "Major Genre": "Action"}


def prepare_store(settings: Settings) -> None:
    """Create the event store tables and the topics."""
    create_tables(settings.require("POSTGRES_URL"))
    asyncio.run(kafka.create_topics(settings))


def schedule_showtime(settings: Settings, hall: int = 0) -> str:
    """Import one film and schedule a showtime for it in a demo hall."""
    env = postgres_env(settings.require("POSTGRES_URL"))
    catalog = Catalog(env=env)
    report = catalog.import_feed([FILM])
    catalog.close()

    scheduler = Scheduler(env=env)
    starts_at = datetime(2030, 1, 1, 19, 30, tzinfo=UTC) + timedelta(
        minutes=uuid.uuid4().int % 10_000
    )
    showtime_id = scheduler.schedule(
        report.movies[0][0], DEMO_AUDITORIUMS[hall], starts_at
    )
    scheduler.close()
    return str(showtime_id)


def booking(showtime_id: str, *seats: str, booking_id: str | None = None) -> BookSeats:
    """Return a BookSeats command for ``seats``."""
    return BookSeats(
        booking_id=booking_id or str(uuid.uuid4()),
        showtime_id=showtime_id,
        seats=list(seats),
        payment_method="card",
    )


async def send_commands(settings: Settings, commands: list[Command]) -> None:
    """Send commands keyed by showtime id, as the API does."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for command in commands:
            await producer.send_and_wait(
                settings.topic(kafka.COMMANDS_TOPIC),
                encode_command(command),
                key=command.showtime_id.encode(),
            )
    finally:
        await producer.stop()


async def send_raw(
    settings: Settings, topic: str, key: bytes, values: list[bytes]
) -> None:
    """Send raw record values to a topic of the stack."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.topic(topic), value, key=key)
    finally:
        await producer.stop()


@asynccontextmanager
async def running(*workers: Any) -> AsyncIterator[None]:
    """Run workers' ``run(stop)`` in this event loop, stopping them on exit."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        yield
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns a true value; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {check}")
        await asyncio.sleep(0.1)


async def read_topic(
    settings: Settings, topic: str, timeout_ms: int = 2000
) -> list[Any]:
    """Return every record of a stack topic, from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, enable_auto_commit=False
    )
    await consumer.start()
    try:
        name = settings.topic(topic)
        partitions = consumer.partitions_for_topic(name) or set()
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while sum(ends.values()) > len(records):
            batch = await consumer.getmany(timeout_ms=timeout_ms)
            if not batch:
                break
            for items in batch.values():
                records.extend(items)
        return records
    finally:
        await consumer.stop()
