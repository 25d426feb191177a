"""Command throughput: BookSeats commands sent straight to Kafka, timed until stored.

One processor process decides the commands. Nothing else of Boxoffice runs, so the
figure is the processor's own speed. Each decision (booked or rejected) is one new
event of its showtime, so the decisions stored are counted in the event store as
the showtimes' events after their first (Scheduled) one.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer

from benchmarks.services import CpuMeter, Stack, Workspace
from benchmarks.showtimes import SEAT_IDS, ShowtimeScheduler, import_movies
from benchmarks.stats import Summary, summarize
from commands.catalog_import import read_feed
from domain.commands import BookSeats, encode_command
from infra.adapters import kafka
from infra.adapters.event_store import create_tables
from infra.adapters.settings import Settings

logger = logging.getLogger(__name__)

# Table of the eventsourcing library's PostgreSQL recorder for applications named
# "boxoffice", which every Boxoffice application is.
EVENTS_TABLE = "boxoffice_events"
COUNT_DECISIONS = (
    f"SELECT count(*) FROM {EVENTS_TABLE} "
    "WHERE originator_id = ANY(%s) AND originator_version > 1"
)
COUNT_BOOKED = COUNT_DECISIONS + " AND topic LIKE '%%SeatsBooked'"
MOVIE_RECORDS = 20
WARM_UP_COMMANDS = 50
READY_TIMEOUT_S = 90.0
SEND_TIMEOUT_S = 30.0
DECIDE_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.01


class DecisionsTimedOutError(RuntimeError):
    """The processor did not store every decision within the timeout."""


@dataclass
class Scenario:
    """One shape of load: how many showtimes share the commands."""

    name: str
    showtimes: int
    commands: int


@dataclass
class ThroughputResult:
    """Repeated timings of one scenario."""

    scenario: Scenario
    commands_per_s: Summary
    seconds: Summary
    send_seconds: Summary
    booked: int
    rejected: int
    # Process name to its median CPU share (1.0 is one core) while commands ran.
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class RunTiming:
    """One run of a scenario."""

    seconds: float
    send_seconds: float
    booked: int
    cpu: dict[str, float]


def book_commands(showtime_ids: list[str], commands: int) -> list[BookSeats]:
    """Return ``commands`` one-seat bookings spread evenly over the showtimes.

    Each showtime's bookings take its seats in order and start again at A1 after
    the last seat, so a showtime with more bookings than seats rejects the rest.
    """
    result = []
    for index in range(commands):
        showtime_id = showtime_ids[index % len(showtime_ids)]
        seat = SEAT_IDS[(index // len(showtime_ids)) % len(SEAT_IDS)]
        result.append(
            BookSeats(
                booking_id=str(uuid.uuid4()),
                showtime_id=showtime_id,
                seats=[seat],
                payment_method="card",
            )
        )
    return result


async def send_commands(
    producer: AIOKafkaProducer, topic: str, commands: list[BookSeats]
) -> None:
    """Send every command keyed by its showtime, and wait until the broker acked all."""
    acks = [
        await producer.send(topic, encode_command(c), key=c.showtime_id.encode())
        for c in commands
    ]
    await asyncio.wait_for(asyncio.gather(*acks), SEND_TIMEOUT_S)


async def count_rows(
    conn: psycopg.AsyncConnection, query: str, showtime_ids: list[str]
) -> int:
    """Return the count that ``query`` finds for these showtimes."""
    ids = [uuid.UUID(i) for i in showtime_ids]
    cursor = await conn.execute(query, (ids,))
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def wait_for_decisions(
    conn: psycopg.AsyncConnection,
    showtime_ids: list[str],
    expected: int,
    timeout: float,
) -> None:
    """Poll the event store until the showtimes have ``expected`` decisions stored."""
    deadline = time.monotonic() + timeout
    stored = 0
    while time.monotonic() < deadline:
        stored = await count_rows(conn, COUNT_DECISIONS, showtime_ids)
        if stored >= expected:
            return
        await asyncio.sleep(POLL_INTERVAL_S)
    raise DecisionsTimedOutError(
        f"only {stored} of {expected} decisions were stored within {timeout:.0f} s"
    )


class ThroughputBench:
    """A processor on its own database and namespace, and the client that loads it."""

    def __init__(self, workspace: Workspace, catalog_records: list[object]) -> None:
        self.workspace = workspace
        self.catalog_records = catalog_records
        self.settings: Settings = workspace.new_settings()
        self.stack: Stack = workspace.new_stack(self.settings, "throughput")
        self.topic = self.settings.topic(kafka.COMMANDS_TOPIC)
        self.scheduler: ShowtimeScheduler | None = None

    def prepare(self) -> None:
        """Create tables and topics, import a few movies and start the processor."""
        url = self.settings.require("POSTGRES_URL")
        create_tables(url)
        asyncio.run(kafka.create_topics(self.settings))
        movie_ids = import_movies(url, self.catalog_records[:MOVIE_RECORDS])
        self.scheduler = ShowtimeScheduler(url, movie_ids[0])
        self.stack.start("processor")

    def close(self) -> None:
        """Close the scheduler's connections; the workspace stops the processor."""
        if self.scheduler is not None:
            self.scheduler.close()

    async def run(
        self, scenarios: list[Scenario], repetitions: int
    ) -> list[ThroughputResult]:
        """Warm the processor up, then run each scenario ``repetitions`` times."""
        producer = kafka.producer(self.settings, linger_ms=5)
        await producer.start()
        conn = await psycopg.AsyncConnection.connect(
            self.settings.require("POSTGRES_URL"), autocommit=True
        )
        try:
            await self.warm_up(producer, conn)
            timings: dict[str, list[RunTiming]] = {s.name: [] for s in scenarios}
            for repetition in range(1, repetitions + 1):
                for scenario in scenarios:
                    timing = await self.run_once(producer, conn, scenario)
                    timings[scenario.name].append(timing)
                    logger.info(
                        "throughput %s %d/%d: %d commands in %.2f s (sent in %.2f s)",
                        scenario.name,
                        repetition,
                        repetitions,
                        scenario.commands,
                        timing.seconds,
                        timing.send_seconds,
                    )
        finally:
            await producer.stop()
            await conn.close()
        return [summarize_runs(s, timings[s.name]) for s in scenarios]

    async def warm_up(
        self, producer: AIOKafkaProducer, conn: psycopg.AsyncConnection
    ) -> None:
        """Wait until the processor has joined its group and decides commands."""
        assert self.scheduler is not None
        showtime_ids = await asyncio.to_thread(self.scheduler.schedule, 1)
        commands = book_commands(showtime_ids, WARM_UP_COMMANDS)
        await send_commands(producer, self.topic, commands)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.stack.check_running()
            stored = await count_rows(conn, COUNT_DECISIONS, showtime_ids)
            if stored >= len(commands):
                return
            await asyncio.sleep(0.1)
        raise DecisionsTimedOutError(
            f"the processor did not decide {len(commands)} warm-up commands within "
            f"{READY_TIMEOUT_S:.0f} s; see {self.stack.log_path('processor')}"
        )

    async def run_once(
        self,
        producer: AIOKafkaProducer,
        conn: psycopg.AsyncConnection,
        scenario: Scenario,
    ) -> RunTiming:
        """Schedule fresh showtimes, send the commands and time until all are stored."""
        assert self.scheduler is not None
        showtime_ids = await asyncio.to_thread(
            self.scheduler.schedule, scenario.showtimes
        )
        commands = book_commands(showtime_ids, scenario.commands)
        meter = CpuMeter(self.stack)
        meter.start()
        started = time.perf_counter()
        await send_commands(producer, self.topic, commands)
        sent = time.perf_counter()
        await wait_for_decisions(conn, showtime_ids, len(commands), DECIDE_TIMEOUT_S)
        finished = time.perf_counter()
        cpu = meter.shares()
        booked = await count_rows(conn, COUNT_BOOKED, showtime_ids)
        return RunTiming(
            seconds=finished - started,
            send_seconds=sent - started,
            booked=booked,
            cpu=cpu,
        )


def summarize_runs(scenario: Scenario, runs: list[RunTiming]) -> ThroughputResult:
    """Return the medians and ranges of a scenario's runs."""
    seconds = [r.seconds for r in runs]
    names = set().union(*(r.cpu for r in runs))
    cpu = {
        name: summarize([r.cpu[name] for r in runs if name in r.cpu]).median
        for name in sorted(names)
    }
    return ThroughputResult(
        scenario=scenario,
        commands_per_s=summarize([scenario.commands / s for s in seconds]),
        seconds=summarize(seconds),
        send_seconds=summarize([r.send_seconds for r in runs]),
        booked=runs[-1].booked,
        rejected=scenario.commands - runs[-1].booked,
        cpu=cpu,
    )


def measure_command_throughput(
    workspace: Workspace,
    catalog_path: Path,
    scenarios: list[Scenario],
    repetitions: int,
) -> list[ThroughputResult]:
    """Run the throughput scenarios against a single processor process."""
    bench = ThroughputBench(workspace, read_feed(catalog_path))
    try:
        bench.prepare()
        return asyncio.run(bench.run(scenarios, repetitions))
    finally:
        bench.close()
        bench.stack.stop_all()
