"""Dead letters: records that cannot be processed, set aside with where they came from.

A poison record (invalid JSON, an unknown type, impossible values) would otherwise
stop its partition for good. It is logged with its topic, partition and offset,
copied to a dead-letter topic with the reason, and passed over.
"""

import base64
import json
import logging
from typing import Any

from aiokafka.structs import ConsumerRecord

from infra.adapters import kafka
from infra.adapters.settings import Settings

logger = logging.getLogger(__name__)


class DeadLetterSender:
    """Sends poison records to a dead-letter topic and counts them."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = settings.topic(topic)
        self.producer = kafka.producer(settings)
        self.count = 0

    async def start(self) -> None:
        """Connect the producer."""
        await self.producer.start()

    async def stop(self) -> None:
        """Flush and close the producer."""
        await self.producer.stop()

    async def send(self, record: ConsumerRecord, reason: str) -> None:
        """Log a poison record and copy it to the dead-letter topic."""
        self.count += 1
        logger.error(
            "passed over poison record at %s partition %s offset %s: %s (%s so far)",
            record.topic,
            record.partition,
            record.offset,
            reason,
            self.count,
        )
        letter = dead_letter(record, reason)
        try:
            await kafka.send_with_deadline(
                self.producer,
                self.topic,
                record.key or b"",
                json.dumps(letter).encode(),
                self.settings.KAFKA_SEND_TIMEOUT_S,
            )
        except (kafka.SendTimedOutError, kafka.SendFailedError) as error:
            # The log line above is the record of last resort.
            logger.error("dead letter for offset %s not sent: %s", record.offset, error)


def dead_letter(record: ConsumerRecord, reason: str) -> dict[str, Any]:
    """Return the dead-letter body: where the record was, why, and its bytes."""
    value = record.value or b""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": (record.key or b"").decode(errors="replace"),
        "reason": reason,
        "valueBase64": base64.b64encode(value).decode(),
    }
