"""The command processor on real Kafka (Tansu) and PostgreSQL."""

import asyncio
import json
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError, PersistenceError

from commands.decider import BookingDecider, CommandBatch
from commands.processor import CommandProcessor
from domain.commands import BookSeats, encode_command
from domain.showtime import Showtime
from infra.adapters import kafka
from infra.adapters.event_store import EventStoreReader, postgres_env, read_epoch
from infra.adapters.lag import consumer_lag
from infra.adapters.settings import Settings
from infra.runtime import embedded
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


def stored_events(settings: Settings, showtime_id: str) -> list[object]:
    """Return the showtime's stored events."""
    reader = EventStoreReader(env=postgres_env(settings.require("POSTGRES_URL")))
    try:
        return list(reader.repository.event_store.get(UUID(showtime_id)))
    finally:
        reader.close()


def decided_bookings(settings: Settings, showtime_id: str) -> list[str]:
    """Return the booking id of every stored decision, in order."""
    events = stored_events(settings, showtime_id)
    return [e.booking_id for e in events if not isinstance(e, Showtime.Scheduled)]


def new_decider(settings: Settings) -> BookingDecider:
    """Return a decider on the test's event store."""
    return BookingDecider(
        env=postgres_env(settings.require("POSTGRES_URL")), max_seats=10
    )


class TestBookingDecider:
    def test_batch_is_stored_with_its_offset(self, settings: Settings) -> None:
        prepare_store(settings)
        showtime_id = schedule_showtime(settings)
        decider = new_decider(settings)
        batch = CommandBatch(
            [(0, booking(showtime_id, "A1")), (1, booking(showtime_id, "A1"))]
        )

        decider.decide("commands.0.e0", batch, last_offset=1)

        assert decider.recorder.max_tracking_id("commands.0.e0") == 1
        events = stored_events(settings, showtime_id)
        assert [type(e).__name__ for e in events] == [
            "Scheduled",
            "SeatsBooked",
            "BookingRejected",
        ]
        decider.close()

    def test_redelivered_batch_stores_nothing(self, settings: Settings) -> None:
        prepare_store(settings)
        showtime_id = schedule_showtime(settings)
        first = new_decider(settings)
        first.decide(
            "commands.0.e0", CommandBatch([(0, booking(showtime_id, "A1"))]), 0
        )
        stale = new_decider(settings)
        late = CommandBatch([(0, booking(showtime_id, "A2"))])

        with pytest.raises(IntegrityError):
            stale.decide("commands.0.e0", late, 0)

        assert len(stored_events(settings, showtime_id)) == 2
        assert stale.showtimes == {}
        first.close()
        stale.close()

    def test_stale_member_write_is_rejected(self, settings: Settings) -> None:
        prepare_store(settings)
        showtime_id = schedule_showtime(settings)
        stale = new_decider(settings)
        stale.load_showtime(showtime_id)
        owner = new_decider(settings)
        owner.decide(
            "commands.0.e0", CommandBatch([(5, booking(showtime_id, "A1"))]), 5
        )

        # The stale member decides a later offset against its old copy of the showtime.
        with pytest.raises(IntegrityError):
            stale.decide(
                "commands.0.e0", CommandBatch([(6, booking(showtime_id, "A1"))]), 6
            )

        assert len(decided_bookings(settings, showtime_id)) == 1
        owner.close()
        stale.close()


class TestCommandProcessor:
    async def test_commands_are_decided_in_order(self, settings: Settings) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        commands = [booking(showtime_id, "B1", "B2") for _ in range(5)]

        async with running(CommandProcessor(settings)):
            await send_commands(settings, commands)
            decided = await eventually(
                lambda: len(decided_bookings(settings, showtime_id)) == 5
            )

        assert decided
        events = stored_events(settings, showtime_id)[1:]
        assert events[0].booking_id == commands[0].booking_id
        assert type(events[0]).__name__ == "SeatsBooked"
        assert all(type(e).__name__ == "BookingRejected" for e in events[1:])
        assert all(e.rejected_seats == ["B1", "B2"] for e in events[1:])

    async def test_duplicate_command_takes_effect_once(
        self, settings: Settings
    ) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        command = booking(showtime_id, "C1")
        marker = booking(showtime_id, "C2")

        async with running(CommandProcessor(settings)):
            await send_commands(settings, [command, command, command, marker])
            await eventually(
                lambda: marker.booking_id in decided_bookings(settings, showtime_id)
            )

        assert decided_bookings(settings, showtime_id) == [
            command.booking_id,
            marker.booking_id,
        ]

    async def test_poison_records_are_passed_over(self, settings: Settings) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        key = showtime_id.encode()
        poison = [
            b"{not json",
            b'{"type": "RefundEverything", "booking_id": "x"}',
            b'{"type": "BookSeats", "booking_id": "not-a-uuid", "showtime_id": "x",'
            b' "seats": 7, "payment_method": "card"}',
            b"NaN",
        ]
        valid = [booking(showtime_id, f"D{n}") for n in range(1, 6)]

        async with running(CommandProcessor(settings)):
            await send_raw(settings, kafka.COMMANDS_TOPIC, key, poison)
            await send_commands(settings, valid)
            await eventually(lambda: len(decided_bookings(settings, showtime_id)) == 5)
            letters = await read_dead_letters(settings, len(poison))
            lag = await eventually(lambda: caught_up(settings))

        assert decided_bookings(settings, showtime_id) == [c.booking_id for c in valid]
        assert [letter["offset"] for letter in letters] == [0, 1, 2, 3]
        assert all(letter["reason"] for letter in letters)
        assert lag == {"booking-processor": 0, "projectors": 0}

    async def test_restart_resumes_after_stored_offset(
        self, settings: Settings
    ) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        first = [booking(showtime_id, f"E{n}") for n in range(1, 4)]
        second = [booking(showtime_id, f"F{n}") for n in range(1, 4)]

        async with running(CommandProcessor(settings)):
            await send_commands(settings, first)
            await eventually(lambda: len(decided_bookings(settings, showtime_id)) == 3)
        await send_commands(settings, second)
        async with running(CommandProcessor(settings)):
            await eventually(lambda: len(decided_bookings(settings, showtime_id)) == 6)
            await asyncio.sleep(1)

        expected = [c.booking_id for c in first + second]
        assert decided_bookings(settings, showtime_id) == expected

    async def test_batched_sends_keep_the_epoch(self, settings: Settings) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        commands = [booking(showtime_id, f"H{n}") for n in range(1, 11)]
        late = booking(showtime_id, "J1")

        async with running(CommandProcessor(settings)):
            await send_batched(settings, commands)
            await eventually(lambda: len(decided_bookings(settings, showtime_id)) == 10)
        # Tansu now reports an end offset below the stored position.
        restarted = CommandProcessor(settings)
        async with running(restarted):
            await eventually(lambda: restarted.positions.tracking_names, timeout=60)
            await send_commands(settings, [late])
            await eventually(
                lambda: late.booking_id in decided_bookings(settings, showtime_id)
            )

        assert len(decided_bookings(settings, showtime_id)) == 11
        assert current_epochs(settings) == {0}

    async def test_emptied_topic_opens_new_epoch(self, settings: Settings) -> None:
        await asyncio.to_thread(prepare_store, settings)
        showtime_id = await asyncio.to_thread(schedule_showtime, settings)
        decider = new_decider(settings)
        # Positions far beyond the topic's end, as after a broker lost its topics.
        for partition in range(settings.COMMAND_PARTITIONS):
            name = f"{settings.topic(kafka.COMMANDS_TOPIC)}.{partition}.e0"
            decider.decide(name, CommandBatch([]), 1_000)
        decider.close()
        command = booking(showtime_id, "G1")

        async with running(CommandProcessor(settings)):
            await send_commands(settings, [command])
            await eventually(
                lambda: decided_bookings(settings, showtime_id) == [command.booking_id]
            )


async def send_batched(settings: Settings, commands: list[BookSeats]) -> None:
    """Send commands in one produce batch, as a busy API does."""
    producer = kafka.producer(settings, linger_ms=100)
    await producer.start()
    try:
        topic = settings.topic(kafka.COMMANDS_TOPIC)
        sends = [
            await producer.send(topic, encode_command(c), key=c.showtime_id.encode())
            for c in commands
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def current_epochs(settings: Settings) -> set[int]:
    """Return the epochs of every command partition."""
    reader = EventStoreReader(env=postgres_env(settings.require("POSTGRES_URL")))
    try:
        topic = settings.topic(kafka.COMMANDS_TOPIC)
        return {
            read_epoch(reader.tracking_recorder, f"{topic}.{partition}")
            for partition in range(settings.COMMAND_PARTITIONS)
        }
    finally:
        reader.close()


def caught_up(settings: Settings) -> dict[str, int] | None:
    """Return the consumer lag once every group has caught up."""
    lag = asyncio.run(consumer_lag(settings))
    return lag if not any(lag.values()) else None


async def read_dead_letters(settings: Settings, count: int) -> list[dict]:
    """Wait for ``count`` dead letters on the commands' dead-letter topic."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        records = await read_topic(settings, kafka.COMMANDS_DEAD_LETTER_TOPIC)
        if len(records) >= count or asyncio.get_running_loop().time() > deadline:
            return sorted(
                (json.loads(r.value) for r in records), key=lambda x: x["offset"]
            )
        await asyncio.sleep(0.2)


def decided_count(settings: Settings, showtime_id: str) -> int:
    """Count the stored decisions, or return -1 while the store is unreachable."""
    try:
        return len(decided_bookings(settings, showtime_id))
    except PersistenceError:
        return -1


class TestStoreOutage:
    async def test_processor_waits_out_postgres_outage(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        server = await asyncio.to_thread(embedded.start_postgres, tmp_path)
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        own = settings.model_copy(update={"POSTGRES_URL": server.url})
        await asyncio.to_thread(prepare_store, own)
        showtime_id = await asyncio.to_thread(schedule_showtime, own)
        before = [booking(showtime_id, f"K{n}") for n in range(1, 4)]
        during = [booking(showtime_id, f"L{n}") for n in range(1, 4)]

        try:
            async with running(CommandProcessor(own)):
                await send_commands(own, before)
                await eventually(lambda: len(decided_bookings(own, showtime_id)) == 3)
                await asyncio.to_thread(server.stop)
                await send_commands(own, during)
                # Longer than the pool's 10 s wait for a connection, so storing fails.
                await asyncio.sleep(12)
                server = await asyncio.to_thread(
                    embedded.start_postgres, tmp_path, port=port
                )
                await eventually(lambda: decided_count(own, showtime_id) == 6, 60)
            decided = decided_bookings(own, showtime_id)
        finally:
            await asyncio.to_thread(server.stop)

        assert decided == [c.booking_id for c in before + during]


class TestBrokerRestart:
    async def test_commands_after_broker_restart_are_decided(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        broker = await asyncio.to_thread(embedded.start_kafka, tmp_path)
        port = int(broker.url.rsplit(":", 1)[1])
        own = settings.model_copy(update={"KAFKA_BOOTSTRAP_SERVERS": broker.url})
        await asyncio.to_thread(prepare_store, own)
        showtime_id = await asyncio.to_thread(schedule_showtime, own)
        before = [booking(showtime_id, f"M{n}") for n in range(1, 4)]
        # More commands than were decided before, so the new partition ends
        # past the stored position and only the lost commits give it away.
        after = [booking(showtime_id, f"N{n}") for n in range(1, 6)]

        try:
            async with running(CommandProcessor(own)):
                await send_commands(own, before)
                await eventually(lambda: len(decided_bookings(own, showtime_id)) == 3)
            await asyncio.to_thread(broker.stop)
            broker = await asyncio.to_thread(embedded.start_kafka, tmp_path, port=port)
            await kafka.create_topics(own)
            await send_commands(own, after)
            async with running(CommandProcessor(own)):
                await eventually(lambda: len(decided_bookings(own, showtime_id)) == 8)
        finally:
            await asyncio.to_thread(broker.stop)

        expected = [c.booking_id for c in before + after]
        assert decided_bookings(own, showtime_id) == expected
