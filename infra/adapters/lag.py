"""Consumer lag: how many records each consumer group has yet to process.

Lag is the sum over a topic's partitions of the end offset minus the group's
committed offset. The processor and the projector commit after every batch they
store, so a lag of 0 means both have caught up with everything sent so far.
"""

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from infra.adapters import kafka
from infra.adapters.settings import Settings

logger = logging.getLogger(__name__)

# Consumer group names, before the stack's namespace prefix.
PROCESSOR_GROUP = "booking-processor"
PROJECTOR_GROUP = "projectors"


def partition_lag(end_offset: int, committed: OffsetAndMetadata | None) -> int:
    """Return the records of one partition after the committed offset.

    NOTE: Tansu 0.6 reports the end offset as the base offset of the partition's
    last record batch plus one, so after a batched send the lag reads low (and
    below 0 before this clamp). Apache Kafka reports the true end offset.
    """
    position = committed.offset if committed is not None and committed.offset > 0 else 0
    return max(end_offset - position, 0)


async def consumer_lag(settings: Settings) -> dict[str, int]:
    """Return the records not yet processed, by consumer group."""
    watched = {
        PROCESSOR_GROUP: (kafka.COMMANDS_TOPIC, settings.COMMAND_PARTITIONS),
        PROJECTOR_GROUP: (kafka.EVENTS_TOPIC, settings.EVENT_PARTITIONS),
    }
    servers = settings.require("KAFKA_BOOTSTRAP_SERVERS")
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=5_000)
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, request_timeout_ms=5_000)
    await admin.start()
    await consumer.start()
    try:
        lag = {}
        for group, (topic, count) in watched.items():
            partitions = [
                TopicPartition(settings.topic(topic), p) for p in range(count)
            ]
            ends = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(
                settings.topic(group), partitions=partitions
            )
            lag[group] = sum(
                partition_lag(ends[tp], committed.get(tp)) for tp in partitions
            )
        return lag
    finally:
        await consumer.stop()
        await admin.close()
