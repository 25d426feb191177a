"""Command handlers: each decides one command against its showtime, in memory.

A handler returns whether it changed the showtime. Handlers do no I/O: the
processor loads the showtime before and stores its new events after, for a whole
batch of commands at once.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.commands import BookSeats, CancelBooking, Command
from domain.errors import BookingError
from domain.showtime import Showtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecisionRules:
    """Limits and the clock reading that one batch of commands is decided with."""

    max_seats: int
    now: datetime


def book_seats(showtime: Showtime, command: BookSeats, rules: DecisionRules) -> bool:
    """Book the seats, or record the rejection; skip a booking already decided."""
    if showtime.has_decided(command.booking_id):
        logger.warning(
            "skipped duplicate booking %s for showtime %s",
            command.booking_id,
            command.showtime_id,
        )
        return False

    showtime.decide_booking(
        command.booking_id,
        command.seats,
        command.wheelchair_spaces,
        command.payment_method,
        rules.max_seats,
        now=rules.now,
    )
    return True


def cancel_booking(
    showtime: Showtime, command: CancelBooking, rules: DecisionRules
) -> bool:
    """Release the booking's seats; a repeated or unknown cancellation does nothing."""
    try:
        showtime.cancel_booking(command.booking_id)
    except BookingError as error:
        logger.warning(
            "skipped cancellation of booking %s for showtime %s: %s",
            command.booking_id,
            command.showtime_id,
            error.message,
        )
        return False
    return True


HANDLERS: dict[type, Callable[[Showtime, Any, DecisionRules], bool]] = {
    BookSeats: book_seats,
    CancelBooking: cancel_booking,
}


def handle(showtime: Showtime, command: Command, rules: DecisionRules) -> bool:
    """Decide one command with its registered handler."""
    return HANDLERS[type(command)](showtime, command, rules)
