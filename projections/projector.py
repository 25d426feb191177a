"""The projector: applies published events to the MongoDB read models and Redis views.

It consumes ``booking-events`` in batches. For each aggregate it stores the last
version applied, in the same MongoDB transaction as the read-model writes, so an
event delivered twice (a relay retry, a republish after a broker restart, a
redelivery after a crash) is skipped. An event whose version jumps past the next
one shows that events were lost on the way. The projector then reads the missing
ones from the event store, which is the system of record.

Redis keeps encoded copies of the hot views. Their keys are deleted before the
MongoDB transaction and written again after it, so a crash in between leaves no
stale copy, only a miss that the API serves from MongoDB.
"""

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

import redis
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import TopicError
from pymongo import UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import PyMongoError

from infra.adapters import cache, kafka, mongo
from infra.adapters.dead_letters import DeadLetterSender
from infra.adapters.event_store import EventStoreReader, postgres_env, stored_event
from infra.adapters.lag import PROJECTOR_GROUP
from infra.adapters.settings import Settings
from projections.bookings import BookingProjection
from projections.indexes import create_indexes
from projections.movies import MovieProjection
from projections.showtimes import ShowtimeProjection
from projections.views import (
    BOOKINGS,
    MOVIES,
    POSITIONS,
    SHOWTIMES,
    encode,
    movie_view,
    seat_map_view,
    ticket_view,
)
from projections.writes import BatchWrites

logger = logging.getLogger(__name__)

VIEW_TTL_S = 3600


class Projection(Protocol):
    """A read model's event handlers."""

    def apply(self, event: Any, writes: BatchWrites) -> None:
        """Queue the writes for one event; ignore events of no interest."""


@dataclass
class Envelope:
    """A published event: its aggregate, version and decoded domain event."""

    originator_id: str
    version: int
    event: DomainEventProtocol[UUID]


class Projector:
    """Applies batches of events to every read model in one MongoDB transaction."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: Database = mongo.database(settings)
        self.redis = cache.client(settings)
        self.keys = cache.Keys(settings.redis_prefix)
        # Keys whose deletion failed while Redis was unavailable, to retry.
        self.stale_keys: set[str] = set()
        self.store = EventStoreReader(
            env=postgres_env(settings.require("POSTGRES_URL"))
        )
        self.projections: list[Projection] = [
            MovieProjection(),
            ShowtimeProjection(self.db, ZoneInfo(settings.TIMEZONE)),
            BookingProjection(self.db),
        ]

    def decode(self, value: bytes | None) -> Envelope:
        """Decode a published event, raising ValueError that names the problem."""
        try:
            body = json.loads(value or b"")
            stored = stored_event(
                body["topic"],
                body["originatorId"],
                int(body["originatorVersion"]),
                json.dumps(body["state"]).encode(),
            )
            event = self.store.mapper.to_domain_event(stored)
        except (ValueError, KeyError, TypeError, TopicError) as error:
            raise ValueError(f"not a stored event: {error!r}") from error
        return Envelope(str(stored.originator_id), stored.originator_version, event)

    def apply_batch(self, envelopes: list[Envelope]) -> int:
        """Apply new events in one transaction, returning how many were applied."""
        positions = self.read_positions({e.originator_id for e in envelopes})
        writes = BatchWrites()
        applied = 0
        for envelope in envelopes:
            for event in self.events_to_apply(envelope, positions):
                for projection in self.projections:
                    projection.apply(event, writes)
                applied += 1
        if not applied:
            return 0

        self.drop_cached_views(writes)
        with self.db.client.start_session() as session:
            session.with_transaction(lambda s: self.write(s, writes, positions))
        self.refresh_cached_views(writes)
        return applied

    def read_positions(self, originator_ids: set[str]) -> dict[str, int]:
        """Return the last version applied for each aggregate."""
        cursor = self.db[POSITIONS].find({"_id": {"$in": sorted(originator_ids)}})
        return {doc["_id"]: doc["version"] for doc in cursor}

    def events_to_apply(
        self, envelope: Envelope, positions: dict[str, int]
    ) -> list[DomainEventProtocol[UUID]]:
        """Return the events to apply for one delivery: none, it, or missed ones too."""
        applied = positions.get(envelope.originator_id, 0)
        if envelope.version <= applied:
            logger.debug(
                "skipped event %s v%s: already applied",
                envelope.originator_id,
                envelope.version,
            )
            return []

        events = [envelope.event]
        if envelope.version > applied + 1:
            logger.warning(
                "event %s v%s arrived after v%s: reading missed events from the store",
                envelope.originator_id,
                envelope.version,
                applied,
            )
            missed = self.store.repository.event_store.get(
                UUID(envelope.originator_id), gt=applied, lte=envelope.version - 1
            )
            events = [*missed, envelope.event]
        positions[envelope.originator_id] = envelope.version
        return events

    def write(
        self, session: ClientSession, writes: BatchWrites, positions: dict[str, int]
    ) -> None:
        """Write the batch and the new positions, inside the session's transaction."""
        for collection, operations in writes.updates.items():
            self.db[collection].bulk_write(operations, ordered=True, session=session)

        moves = [
            UpdateOne(
                {"_id": originator_id}, {"$max": {"version": version}}, upsert=True
            )
            for originator_id, version in positions.items()
        ]
        if moves:
            self.db[POSITIONS].bulk_write(moves, ordered=False, session=session)

    def drop_cached_views(self, writes: BatchWrites) -> None:
        """Delete the Redis copies of the views this batch changes.

        Redis only speeds up reads, so its failure must not stop the read models:
        keys that could not be deleted are kept and deleted with the next batch.
        """
        keys = {self.keys.seat_map(i) for i in writes.showtimes}
        keys |= {self.keys.ticket(i) for i in writes.bookings}
        keys |= {self.keys.movie(i) for i in writes.movies}
        keys |= self.stale_keys
        if not keys:
            return

        try:
            self.redis.delete(*sorted(keys))
        except redis.RedisError as error:
            self.stale_keys = keys
            logger.warning(
                "Redis unavailable, %s cached views left to delete: %r",
                len(keys),
                error,
            )
            return
        self.stale_keys.clear()

    def refresh_cached_views(self, writes: BatchWrites) -> None:
        """Encode the changed views into Redis and invalidate cached list queries."""
        if self.stale_keys:
            # Redis failed before the transaction; the API reads MongoDB meanwhile.
            return

        pipe = self.redis.pipeline(transaction=False)
        for doc in self.find(SHOWTIMES, writes.showtimes):
            pipe.set(
                self.keys.seat_map(doc["_id"]),
                encode(seat_map_view(doc)),
                ex=VIEW_TTL_S,
            )
        for doc in self.find(BOOKINGS, writes.bookings):
            pipe.set(
                self.keys.ticket(doc["_id"]), encode(ticket_view(doc)), ex=VIEW_TTL_S
            )
        for doc in self.find(MOVIES, writes.movies):
            pipe.set(
                self.keys.movie(doc["_id"]), encode(movie_view(doc)), ex=VIEW_TTL_S
            )
        if writes.movies:
            pipe.incr(self.keys.generation(MOVIES))
        if writes.showtimes or writes.movies:
            pipe.incr(self.keys.generation(SHOWTIMES))
        try:
            pipe.execute()
        except redis.RedisError as error:
            logger.warning("Redis unavailable, cached views not refreshed: %r", error)

    def find(self, collection: str, ids: set[str]) -> list[dict[str, Any]]:
        """Return the documents with these ids."""
        if not ids:
            return []
        return list(self.db[collection].find({"_id": {"$in": sorted(ids)}}))

    def close(self) -> None:
        """Close the clients."""
        self.store.close()
        self.db.client.close()
        self.redis.close()


class ProjectorRunner:
    """Consumes the events topic and feeds each batch to the projector."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(kafka.EVENTS_TOPIC)
        self.projector = Projector(settings)
        self.consumer = kafka.consumer(
            settings, settings.topic(PROJECTOR_GROUP), self.topic
        )
        self.dead_letters = DeadLetterSender(settings, kafka.EVENTS_DEAD_LETTER_TOPIC)

    async def run(self, stop: asyncio.Event) -> None:
        """Apply events until ``stop`` is set."""
        await kafka.create_topics(self.settings)
        await asyncio.to_thread(create_indexes, self.projector.db)
        await self.dead_letters.start()
        await self.consumer.start()
        logger.info("projector started on %s", self.topic)
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    await self.project(tp, records)
        finally:
            await self.consumer.stop()
            await self.dead_letters.stop()
            self.projector.close()
            logger.info("projector stopped")

    async def project(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        """Apply one partition's batch, set poison records aside, and commit."""
        envelopes: list[Envelope] = []
        for record in records:
            try:
                envelopes.append(self.projector.decode(record.value))
            except ValueError as error:
                await self.dead_letters.send(record, str(error))

        applied = await self.apply_with_retry(tp, envelopes)
        logger.debug(
            "partition %s: %s events applied up to offset %s",
            tp.partition,
            applied,
            records[-1].offset,
        )
        try:
            await self.consumer.commit({tp: records[-1].offset + 1})
        except (CommitFailedError, KafkaError) as error:
            # Positions in MongoDB make the redelivery that follows harmless.
            logger.warning("commit of partition %s failed: %r", tp.partition, error)

    async def apply_with_retry(
        self, tp: TopicPartition, envelopes: list[Envelope]
    ) -> int:
        """Apply a batch, retrying with backoff while MongoDB or Redis is down."""
        delay = 0.2
        for attempt in range(1, 8):
            try:
                return await asyncio.to_thread(self.projector.apply_batch, envelopes)
            except (redis.RedisError, PyMongoError) as error:
                logger.warning(
                    "partition %s batch failed (attempt %s): %r; retrying in %.1f s",
                    tp.partition,
                    attempt,
                    error,
                    delay,
                )
            except Exception:
                logger.exception("applying partition %s batch failed", tp.partition)
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise RuntimeError(f"partition {tp.partition} batch failed after 7 attempts")
