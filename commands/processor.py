"""The command processor: a Kafka consumer group that decides booking commands.

Each partition of ``booking-commands`` is decided one batch at a time. The offset a
batch reached is stored with its events (see ``commands.decider``); Kafka's own
committed offsets are written too, but only so that lag tools can read them: on
every assignment the processor seeks to the position stored in PostgreSQL.

Tansu keeps topics in memory, so a broker restart empties them and offsets start
again from 0. A stored position above a partition's end offset shows that this
happened. The processor then opens a new epoch for the partition, a fresh tracking
name, so that new commands are not mistaken for ones already decided.
"""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, OffsetOutOfRangeError
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import IntegrityError, PersistenceError, TrackingRecorder

from commands.decider import BookingDecider, CommandBatch
from domain.commands import CommandDecodeError, decode_command
from infra.adapters import kafka
from infra.adapters.dead_letters import DeadLetterSender
from infra.adapters.event_store import (
    epoch_positions_name,
    open_next_epoch,
    postgres_env,
    read_epoch,
)
from infra.adapters.lag import PROCESSOR_GROUP
from infra.adapters.settings import Settings

logger = logging.getLogger(__name__)

FIRST_STORE_RETRY_S = 0.5
MAX_STORE_RETRY_S = 10.0


class PartitionPositions(ConsumerRebalanceListener):
    """Seeks each assigned partition to the offset after the last one decided."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        decider: BookingDecider,
        topic: str,
        bootstrap_servers: str,
    ) -> None:
        self.consumer = consumer
        self.decider = decider
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.tracking_names: dict[int, str] = {}

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Forget the showtimes of partitions that another member may now decide."""
        logger.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))
        for tp in revoked:
            self.tracking_names.pop(tp.partition, None)
        self.decider.forget_showtimes()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Seek every new partition to its stored position."""
        logger.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))
        self.decider.forget_showtimes()
        if not assigned:
            return

        end_offsets = await self.consumer.end_offsets(list(assigned))
        for tp in assigned:
            await self.seek_to_stored(tp, end_offsets[tp])

    async def has_record(self, tp: TopicPartition, offset: int) -> bool:
        """Return whether the partition still contains the record at ``offset``.

        Tansu 0.6 reports a partition's end offset as the base offset of its last
        record batch plus one, which is below the true end after a batched send.
        So an end offset below the stored position proves nothing by itself: the
        topic was lost only if the last decided record is gone too.
        """
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="none",
        )
        await reader.start()
        try:
            reader.assign([tp])
            reader.seek(tp, offset)
            batch = await reader.getmany(tp, timeout_ms=2_000, max_records=1)
        except OffsetOutOfRangeError:
            return False
        finally:
            await reader.stop()
        return any(record.offset == offset for record in batch.get(tp, []))

    async def commit_position(self, tp: TopicPartition, offset: int) -> None:
        """Commit the stored position to Kafka, so lag tools see what is decided.

        A member killed between storing a batch and committing it leaves Kafka's
        offset behind the stored one. Without this commit the lag would stay above 0
        until a new command arrives on that partition.
        """
        try:
            await self.consumer.commit({tp: offset})
        except KafkaError as error:
            logger.warning(
                "commit of partition %s offset %s failed: %r",
                tp.partition,
                offset,
                error,
            )

    async def seek_to_stored(self, tp: TopicPartition, end_offset: int) -> None:
        """Seek one partition, opening a new epoch when the broker lost the topic."""
        recorder = self.decider.recorder
        name = f"{self.topic}.{tp.partition}"
        epoch = await asyncio.to_thread(read_epoch, recorder, name)
        positions = epoch_positions_name(name, epoch)
        stored = await asyncio.to_thread(recorder.max_tracking_id, positions)
        next_offset = 0 if stored is None else stored + 1

        lost = await self.topic_was_lost(tp, stored, end_offset)
        if lost:
            logger.warning(
                "partition %s: %s, so epoch %s starts at offset 0",
                tp.partition,
                lost,
                epoch + 1,
            )
            epoch = await asyncio.to_thread(open_epoch_after, recorder, name, epoch)
            positions = epoch_positions_name(name, epoch)
            next_offset = 0

        self.tracking_names[tp.partition] = positions
        self.consumer.seek(tp, next_offset)
        await self.commit_position(tp, next_offset)
        logger.info(
            "partition %s resumes at offset %s (%s)",
            tp.partition,
            next_offset,
            positions,
        )

    async def topic_was_lost(
        self, tp: TopicPartition, stored: int | None, end_offset: int
    ) -> str:
        """Return why the broker must have lost the partition, or "" when it did not.

        A broker that lost its topics (Tansu keeps them in memory) lost the group's
        committed offsets too, and new commands may already fill the new partition
        past the stored position, so the end offset alone cannot tell. This process
        commits the position on every assignment, so a stored position without a
        committed offset means the broker started afresh.
        """
        if stored is None:
            return ""
        if await self.consumer.committed(tp) is None:
            return f"no committed offset although offset {stored} was decided"
        if stored + 1 > end_offset and not await self.has_record(tp, stored):
            return f"the partition ends at {end_offset}, before the decided {stored}"
        return ""


def open_epoch_after(recorder: TrackingRecorder, name: str, epoch: int) -> int:
    """Open the epoch after ``epoch``, or return the one another member opened."""
    try:
        return open_next_epoch(recorder, name, epoch)
    except IntegrityError:
        # Tracking records only move forward: another processor got there first.
        return read_epoch(recorder, name)


class CommandProcessor:
    """Consumes booking commands and decides them partition by partition."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(kafka.COMMANDS_TOPIC)
        self.decider = BookingDecider(
            env=postgres_env(settings.require("POSTGRES_URL")),
            max_seats=settings.MAX_SEATS_PER_BOOKING,
            debug_delay_ms=settings.PROCESSOR_DEBUG_DELAY_MS,
        )
        self.consumer = kafka.consumer(settings, settings.topic(PROCESSOR_GROUP))
        self.positions = PartitionPositions(
            self.consumer,
            self.decider,
            self.topic,
            settings.require("KAFKA_BOOTSTRAP_SERVERS"),
        )
        self.dead_letters = DeadLetterSender(settings, kafka.COMMANDS_DEAD_LETTER_TOPIC)
        self.store_retry_delay = FIRST_STORE_RETRY_S

    async def run(self, stop: asyncio.Event) -> None:
        """Decide commands until ``stop`` is set."""
        await kafka.create_topics(self.settings)
        await self.dead_letters.start()
        self.consumer.subscribe([self.topic], listener=self.positions)
        await self.consumer.start()
        logger.info("command processor started on %s", self.topic)
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    await self.decide_records(tp, records)
        finally:
            await self.consumer.stop()
            await self.dead_letters.stop()
            self.decider.close()
            logger.info("command processor stopped")

    async def decide_records(
        self, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        """Decide one partition's batch, then send what could not be decided aside."""
        name = self.positions.tracking_names.get(tp.partition)
        if name is None or not records:
            return

        batch, poison = decode_batch(records)
        last_offset = records[-1].offset
        try:
            await asyncio.to_thread(self.decider.decide, name, batch, last_offset)
        except IntegrityError as error:
            await self.resume_after_conflict(tp, records, error)
            return
        except PersistenceError as error:
            await self.resume_after_store_failure(tp, records, error)
            return

        for offset, command in batch.unknown_showtimes:
            reason = f"showtime {command.showtime_id} does not exist"
            poison.append((records_by_offset(records)[offset], reason))
        for record, reason in poison:
            await self.dead_letters.send(record, reason)
        logger.debug(
            "decided %s commands of partition %s up to offset %s",
            len(records),
            tp.partition,
            last_offset,
        )
        self.store_retry_delay = FIRST_STORE_RETRY_S
        await self.commit(tp, last_offset)

    async def resume_after_conflict(
        self, tp: TopicPartition, records: list[ConsumerRecord], error: Exception
    ) -> None:
        """Re-read the stored position after a batch was refused, and seek to it."""
        logger.warning(
            "batch of partition %s at offsets %s-%s was not stored (%s): "
            "it was decided already or a showtime changed; resuming from the store",
            tp.partition,
            records[0].offset,
            records[-1].offset,
            error,
        )
        end_offsets = await self.consumer.end_offsets([tp])
        await self.positions.seek_to_stored(tp, end_offsets[tp])

    async def resume_after_store_failure(
        self, tp: TopicPartition, records: list[ConsumerRecord], error: Exception
    ) -> None:
        """Wait with growing delays while PostgreSQL fails, then re-read the batch.

        The batch was not stored, so seeking back to the stored position makes
        the next poll deliver it again.
        """
        logger.warning(
            "storing partition %s offsets %s-%s failed: %r; retrying in %.1f s",
            tp.partition,
            records[0].offset,
            records[-1].offset,
            error,
            self.store_retry_delay,
        )
        await asyncio.sleep(self.store_retry_delay)
        self.store_retry_delay = min(self.store_retry_delay * 2, MAX_STORE_RETRY_S)
        try:
            end_offsets = await self.consumer.end_offsets([tp])
            await self.positions.seek_to_stored(tp, end_offsets[tp])
        except (PersistenceError, KafkaError) as again:
            # Still failing: re-read this batch from where it started.
            logger.warning("partition %s still unavailable: %r", tp.partition, again)
            self.consumer.seek(tp, records[0].offset)

    async def commit(self, tp: TopicPartition, last_offset: int) -> None:
        """Commit the Kafka offset for lag monitoring; a failure here loses nothing."""
        try:
            await self.consumer.commit({tp: last_offset + 1})
        except (CommitFailedError, KafkaError) as error:
            logger.warning(
                "commit of partition %s offset %s failed: %r",
                tp.partition,
                last_offset,
                error,
            )


def decode_batch(
    records: list[ConsumerRecord],
) -> tuple[CommandBatch, list[tuple[ConsumerRecord, str]]]:
    """Split records into decodable commands and poison records with the reason."""
    batch = CommandBatch(commands=[])
    poison: list[tuple[ConsumerRecord, str]] = []
    for record in records:
        try:
            command = decode_command(record.value)
        except CommandDecodeError as error:
            poison.append((record, str(error)))
            continue
        if (
            record.key is not None
            and record.key.decode(errors="replace") != command.showtime_id
        ):
            poison.append(
                (record, "record key does not match the command's showtime id")
            )
            continue
        batch.commands.append((record.offset, command))
    return batch, poison


def records_by_offset(records: list[ConsumerRecord]) -> dict[int, ConsumerRecord]:
    """Index records by offset."""
    return {record.offset: record for record in records}
