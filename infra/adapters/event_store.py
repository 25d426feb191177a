"""The PostgreSQL event store, through the ``eventsourcing`` library's recorders.

The library reads its settings as ``POSTGRES_*`` keys; this module turns our one
URL into those keys. Tables are created once, by ``create_tables``, because several
processes creating them at once fail with "tuple concurrently updated"; every
application after that is built with ``CREATE_TABLE=no``.
"""

import logging
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import (
    Notification,
    StoredEvent,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresProcessRecorder

logger = logging.getLogger(__name__)

# Events are read from the notification log in sections of this many.
NOTIFICATION_BATCH = 500


def postgres_env(url: str, create_table: bool = False) -> dict[str, str]:
    """Return the eventsourcing settings for the PostgreSQL database at ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        msg = f"BOXOFFICE_POSTGRES_URL {url!r} is not postgresql://user@host:port/db"
        raise ValueError(msg)

    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.strip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "CREATE_TABLE": "yes" if create_table else "no",
    }


class EventStoreReader(Application):
    """Reads stored events in order; the relay and projection rebuilds use it."""

    name = "boxoffice"
    log_section_size = NOTIFICATION_BATCH

    def select_notifications(self, after: int, limit: int) -> list[Notification]:
        """Return up to ``limit`` stored events whose position is above ``after``."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        return recorder.select_notifications(start=after + 1, limit=limit)

    def max_notification_id(self) -> int:
        """Return the position of the last stored event, 0 when there is none."""
        assert isinstance(self.recorder, PostgresApplicationRecorder)
        return self.recorder.max_notification_id() or 0

    @property
    def tracking_recorder(self) -> PostgresProcessRecorder:
        """Return the recorder as the process recorder it is, for positions."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresProcessRecorder)
        return recorder

    def max_tracking_id(self, name: str) -> int | None:
        """Return the last position recorded under ``name``, None when there is none."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresProcessRecorder)
        return recorder.max_tracking_id(name)

    def record_position(self, name: str, position: int) -> None:
        """Move the position recorded under ``name`` forward to ``position``."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresProcessRecorder)
        recorder.insert_tracking(Tracking(name, position))

    def construct_recorder(self) -> PostgresProcessRecorder:  # type: ignore[override]
        """Use a process recorder, which also stores positions (tracking records)."""
        recorder = self.factory.process_recorder()
        assert isinstance(recorder, PostgresProcessRecorder)
        return recorder


def read_epoch(recorder: TrackingRecorder, name: str) -> int:
    """Return the current epoch of the positions stored under ``name``, 0 at first.

    A consumer stores its positions in a Kafka topic under ``<name>.e<epoch>``.
    When the broker loses a topic, its offsets start again from 0. Tracking records
    only move forward, so the consumer opens the next epoch, which stores positions
    under a new name.
    """
    return recorder.max_tracking_id(f"{name}.epoch") or 0


def open_next_epoch(recorder: TrackingRecorder, name: str, epoch: int) -> int:
    """Store and return the epoch after ``epoch``."""
    recorder.insert_tracking(Tracking(f"{name}.epoch", epoch + 1))
    return epoch + 1


def epoch_positions_name(name: str, epoch: int) -> str:
    """Return the tracking name under which positions of ``epoch`` are stored."""
    return f"{name}.e{epoch}"


def create_tables(url: str) -> None:
    """Create the event and tracking tables if they are missing."""
    app = EventStoreReader(env=postgres_env(url, create_table=True))
    app.close()
    logger.info("event store tables are ready in %s", redact(url))


def stored_event(
    topic: str, originator_id: str, version: int, state: bytes
) -> StoredEvent:
    """Build a stored event from its published fields, for the mapper to decode."""
    return StoredEvent(
        originator_id=UUID(originator_id),
        originator_version=version,
        topic=topic,
        state=state,
    )


def redact(url: str) -> str:
    """Return ``url`` with any password replaced, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return url.replace(f":{parts.password}@", ":***@")
