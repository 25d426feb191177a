"""The event relay: publishes stored events, in order, to the ``booking-events`` topic.

PostgreSQL is the system of record. The relay reads its notification log after
the last position it published, sends each event keyed by its aggregate id, and
stores the new position only after the broker acknowledged the whole batch. A crash
in between publishes some events twice; projectors skip them by aggregate version.

When the events topic is empty although the relay has published before, the broker
lost it (Tansu keeps topics in memory), and the relay publishes everything again
from the start of the log.
"""

import asyncio
import json
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from eventsourcing.persistence import Notification, PersistenceError

from infra.adapters import kafka
from infra.adapters.event_store import (
    NOTIFICATION_BATCH,
    EventStoreReader,
    epoch_positions_name,
    open_next_epoch,
    postgres_env,
    read_epoch,
)
from infra.adapters.settings import Settings

logger = logging.getLogger(__name__)

POSITION_NAME = "booking-events-relay"
IDLE_SLEEP_S = 0.02
TOPIC_CHECK_INTERVAL_S = 5.0
RETRY_FIRST_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 10.0


def event_message(notification: Notification) -> bytes:
    """Return the published form of a stored event: its position, ids and state."""
    body = {
        "notificationId": notification.id,
        "originatorId": str(notification.originator_id),
        "originatorVersion": notification.originator_version,
        "topic": notification.topic,
        "state": json.loads(notification.state),
    }
    return json.dumps(body, separators=(",", ":")).encode()


class EventRelay:
    """Copies the notification log to the events topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(kafka.EVENTS_TOPIC)
        self.store = EventStoreReader(
            env=postgres_env(settings.require("POSTGRES_URL"))
        )
        self.producer = kafka.producer(settings, linger_ms=5)
        self.watcher = AIOKafkaConsumer(
            bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS
        )
        self.epoch = 0
        self.position = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Publish new events until ``stop`` is set."""
        await kafka.create_topics(self.settings)
        await self.producer.start()
        await self.watcher.start()
        await asyncio.to_thread(self.read_stored_position)
        logger.info(
            "event relay started at position %s (epoch %s)", self.position, self.epoch
        )
        checked_at = 0.0
        delay = RETRY_FIRST_DELAY_S
        try:
            while not stop.is_set():
                try:
                    if (
                        asyncio.get_running_loop().time() - checked_at
                        > TOPIC_CHECK_INTERVAL_S
                    ):
                        await self.restart_if_topic_lost()
                        checked_at = asyncio.get_running_loop().time()
                    published = await self.publish_next_batch()
                except (KafkaError, TimeoutError, PersistenceError) as error:
                    # Nothing after the stored position counts as published, so
                    # retrying from it loses nothing; projectors skip repeats.
                    logger.warning(
                        "publishing after position %s failed: %r; retrying in %.1f s",
                        self.position,
                        error,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_DELAY_S)
                    await asyncio.to_thread(self.read_stored_position)
                    continue
                delay = RETRY_FIRST_DELAY_S
                if not published:
                    await asyncio.sleep(IDLE_SLEEP_S)
        finally:
            await self.producer.stop()
            await self.watcher.stop()
            self.store.close()
            logger.info("event relay stopped at position %s", self.position)

    @property
    def positions_name(self) -> str:
        """Return the tracking name of the current epoch's position."""
        return epoch_positions_name(POSITION_NAME, self.epoch)

    def read_stored_position(self) -> None:
        """Read the epoch and the position of the last event published in it."""
        self.epoch = read_epoch(self.store.tracking_recorder, POSITION_NAME)
        self.position = self.store.max_tracking_id(self.positions_name) or 0

    async def publish_next_batch(self) -> bool:
        """Publish the events after the position; return whether there were any."""
        notifications = await asyncio.to_thread(
            self.store.select_notifications, self.position, NOTIFICATION_BATCH
        )
        if not notifications:
            return False

        sends = [
            await self.producer.send(
                self.topic,
                event_message(n),
                key=str(n.originator_id).encode(),
            )
            for n in notifications
        ]
        deadline = self.settings.KAFKA_SEND_TIMEOUT_S * 2
        await asyncio.wait_for(asyncio.gather(*sends), deadline)

        self.position = notifications[-1].id
        await asyncio.to_thread(
            self.store.record_position, self.positions_name, self.position
        )
        logger.debug(
            "published %s events up to position %s", len(notifications), self.position
        )
        return True

    async def restart_if_topic_lost(self) -> None:
        """Start again from the beginning when the broker has lost the events topic."""
        await kafka.create_topics(self.settings)
        if self.position == 0:
            return

        partitions = range(self.settings.EVENT_PARTITIONS)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        end_offsets = await self.watcher.end_offsets(tps)
        if sum(end_offsets.values()) > 0:
            return

        logger.warning(
            "topic %s is empty but %s events were published: the broker lost it, "
            "publishing every stored event again",
            self.topic,
            self.position,
        )
        self.epoch = await asyncio.to_thread(
            open_next_epoch, self.store.tracking_recorder, POSITION_NAME, self.epoch
        )
        self.position = 0
