"""The booking decider: decides batches of commands and stores the new events together
with the Kafka offset reached, in one PostgreSQL transaction.

It is an ``eventsourcing`` process application. The library's single-row tracking
record per partition moves only forward: storing an offset at or below the stored
one raises IntegrityError and stores no events. So a batch delivered twice, or
decided late by a member that lost its partition, is never applied twice.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.persistence import Tracking
from eventsourcing.projection import EventSourcedProjection

from commands.handlers import DecisionRules, handle
from domain.commands import Command
from domain.showtime import Showtime

logger = logging.getLogger(__name__)


@dataclass
class CommandBatch:
    """Commands from one partition with their offsets, in offset order."""

    commands: list[tuple[int, Command]]
    unknown_showtimes: list[tuple[int, Command]] = field(default_factory=list)


class BookingDecider(EventSourcedProjection[UUID]):
    """Decides booking commands against Showtime aggregates kept in memory."""

    # Shares the event and tracking tables with every other Boxoffice application.
    name = "boxoffice"

    def __init__(
        self, env: dict[str, str], max_seats: int, debug_delay_ms: int = 0
    ) -> None:
        super().__init__(env)
        self.max_seats = max_seats
        self.debug_delay_ms = debug_delay_ms
        self.showtimes: dict[str, Showtime] = {}

    def decide(self, tracking_name: str, batch: CommandBatch, last_offset: int) -> None:
        """Decide a batch; store its events with ``last_offset`` as ``tracking_name``.

        Raises the store's IntegrityError when that position is already stored,
        because the batch was decided before, or when another member changed one of
        the showtimes. The caller then forgets its showtimes and reads the position
        again.
        """
        tracking = Tracking(application_name=tracking_name, notification_id=last_offset)
        try:
            self.process_event(batch, tracking)  # type: ignore[arg-type]
        except Exception:
            # The showtimes may hold decisions that were never stored.
            self.forget_showtimes()
            raise

    def forget_showtimes(self) -> None:
        """Drop the showtimes held in memory, so they are read again from the store."""
        self.showtimes.clear()

    @singledispatchmethod
    def policy(
        self, domain_event: Any, processing_event: ProcessingEvent[UUID]
    ) -> None:
        """Decide each command of the batch and collect the showtimes' new events."""
        batch: CommandBatch = domain_event
        rules = DecisionRules(self.max_seats, now=datetime.now(UTC))
        changed: dict[str, Showtime] = {}
        for offset, command in batch.commands:
            showtime = self.load_showtime(command.showtime_id)
            if showtime is None:
                batch.unknown_showtimes.append((offset, command))
                continue
            if handle(showtime, command, rules):
                changed[command.showtime_id] = showtime

        if self.debug_delay_ms and batch.commands:
            logger.warning(
                "sleeping %s ms inside a batch (test hook)", self.debug_delay_ms
            )
            time.sleep(self.debug_delay_ms / 1000)
            self.debug_delay_ms = 0
        processing_event.collect_events(*changed.values())

    def load_showtime(self, showtime_id: str) -> Showtime | None:
        """Return the showtime from memory, reading it from the store the first time."""
        showtime = self.showtimes.get(showtime_id)
        if showtime is not None:
            return showtime

        try:
            showtime = self.repository.get(UUID(showtime_id))
        except AggregateNotFoundError:
            return None
        if not isinstance(showtime, Showtime):
            return None

        self.showtimes[showtime_id] = showtime
        return showtime
