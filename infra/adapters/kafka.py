"""Kafka clients: topic creation, a producer with a deadline, and consumer settings.

Tansu (the embedded broker) keeps topics in memory, creates 4 partitions when a
topic is auto-created, and has no idempotent producer. So topics are created
explicitly at start, idempotence is a setting, and every send is bounded by a
deadline of our own, because ``request_timeout_ms`` does not bound how long
``send_and_wait`` waits.
"""

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from infra.adapters.settings import Settings

logger = logging.getLogger(__name__)

COMMANDS_TOPIC = "booking-commands"
EVENTS_TOPIC = "booking-events"
COMMANDS_DEAD_LETTER_TOPIC = "booking-commands.dead-letter"
EVENTS_DEAD_LETTER_TOPIC = "booking-events.dead-letter"


class SendTimedOutError(Exception):
    """Raised when a send missed its deadline; the record may still be written."""

    retriable = True


class SendFailedError(Exception):
    """Raised when the broker rejected a send."""

    retriable = True


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Return every topic this stack uses, with its partition count."""
    return {
        settings.topic(COMMANDS_TOPIC): settings.COMMAND_PARTITIONS,
        settings.topic(EVENTS_TOPIC): settings.EVENT_PARTITIONS,
        settings.topic(COMMANDS_DEAD_LETTER_TOPIC): 1,
        settings.topic(EVENTS_DEAD_LETTER_TOPIC): 1,
    }


async def create_topics(settings: Settings) -> None:
    """Create the stack's topics, leaving topics that already exist as they are."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.require("KAFKA_BOOTSTRAP_SERVERS"),
        request_timeout_ms=15_000,
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = topic_partitions(settings)
        new = [
            NewTopic(name, count, 1)
            for name, count in wanted.items()
            if name not in existing
        ]
        if new:
            await create_new_topics(admin, new)
    finally:
        await admin.close()


async def create_new_topics(admin: AIOKafkaAdminClient, new: list[NewTopic]) -> None:
    """Send one CreateTopics request, treating "already exists" as success."""
    response = await admin.create_topics(new)
    for name, code, *_ in response.topic_errors:
        if code == 0:
            logger.info("created topic %s", name)
        elif code == TopicAlreadyExistsError.errno:
            logger.info("topic %s already exists", name)
        else:
            raise KafkaError(f"creating topic {name} failed with error code {code}")


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """Build a producer; call ``start()`` on it before sending."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require("KAFKA_BOOTSTRAP_SERVERS"),
        "enable_idempotence": settings.KAFKA_IDEMPOTENCE,
        "acks": "all",
        "linger_ms": 2,
        "request_timeout_ms": int(settings.KAFKA_SEND_TIMEOUT_S * 1000),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def send_with_deadline(
    client: AIOKafkaProducer, topic: str, key: bytes, value: bytes, deadline_s: float
) -> None:
    """Send one record and wait at most ``deadline_s`` for the acknowledgement.

    Raises SendTimedOutError when the deadline passes. The record may have been
    written all the same (a send that timed out while the broker was paused was
    seen to land), so callers must make a retry harmless.
    """
    try:
        await asyncio.wait_for(client.send_and_wait(topic, value, key=key), deadline_s)
    except TimeoutError as error:
        raise SendTimedOutError(
            f"send to {topic} took longer than {deadline_s} s"
        ) from error
    except KafkaError as error:
        raise SendFailedError(f"send to {topic} failed: {error!r}") from error


def consumer(
    settings: Settings, group_id: str, *topics: str, **overrides: Any
) -> AIOKafkaConsumer:
    """Build a group consumer that commits only when ``commit()`` is called.

    The request timeout stays above the rebalance timeout: a 5 s request timeout
    was seen to fail to join a group on Tansu.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require("KAFKA_BOOTSTRAP_SERVERS"),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 500,
        # Tansu keeps a fetch waiting for up to this long when no record is waiting; the
        # aiokafka default of 500 ms was measured to add about 200 ms to each hop.
        "fetch_max_wait_ms": 20,
        "session_timeout_ms": settings.KAFKA_SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": max(settings.KAFKA_SESSION_TIMEOUT_MS // 4, 300),
        "rebalance_timeout_ms": 20_000,
        "request_timeout_ms": 40_000,
        "max_poll_interval_ms": settings.KAFKA_MAX_POLL_INTERVAL_MS,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)
