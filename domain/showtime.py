"""The Showtime aggregate: one screening of a movie and the seats sold for it.

Every booking command for a showtime is decided here, one at a time, and every
decision is stored as an event: seats booked, or the booking rejected with the
reason and the seat ids at fault. Storing rejections too means a client can always
learn the outcome of its command, and a command that arrives twice is recognised by
its booking id and decided once.
"""

from datetime import UTC, datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    BookingAlreadyCancelledError,
    BookingError,
    BookingNotFoundError,
    InvalidSeatsError,
    SeatUnavailableError,
    ShowtimeStartedError,
    TooManySeatsError,
)
from domain.seating import SeatMap, find_seat_problems, seat_map_of

SHOWTIME_NAMESPACE = UUID("6f1b9a44-3c55-4f3e-9a55-2f0f0c1e7d21")


class Showtime(Aggregate):
    """A screening of one movie in one auditorium at one start time."""

    class Scheduled(Aggregate.Created):
        """The showtime was put on the schedule with its auditorium's seat map."""

        movie_id: str
        auditorium_id: str
        auditorium_name: str
        starts_at: datetime
        rows: list[list[str]]

    class SeatsBooked(Aggregate.Event):
        """Every requested seat was sold to the booking."""

        booking_id: str
        seats: list[str]
        wheelchair_spaces: list[str]
        payment_method: str

    class BookingRejected(Aggregate.Event):
        """The booking was refused; ``rejected_seats`` names the seats at fault."""

        booking_id: str
        seats: list[str]
        wheelchair_spaces: list[str]
        payment_method: str
        code: str
        reason: str
        rejected_seats: list[str]

    class BookingCancelled(Aggregate.Event):
        """The booking was cancelled and its seats released."""

        booking_id: str
        seats: list[str]

    @staticmethod
    def create_id(auditorium_id: str, starts_at: datetime, **_: object) -> UUID:
        """Derive the id from auditorium and start, so scheduling twice is harmless."""
        return showtime_id(auditorium_id, starts_at)

    @event(Scheduled)
    def __init__(
        self,
        movie_id: str,
        auditorium_id: str,
        auditorium_name: str,
        starts_at: datetime,
        rows: list[list[str]],
    ) -> None:
        if starts_at.tzinfo is None:
            raise ValueError(f"starts_at {starts_at.isoformat()} has no time zone")
        SeatMap(tuple((label, layout) for label, layout in rows))

        self.movie_id = movie_id
        self.auditorium_id = auditorium_id
        self.auditorium_name = auditorium_name
        self.starts_at = starts_at
        self.rows = rows
        self.sold: dict[str, str] = {}
        self.bookings: dict[str, list[str]] = {}
        self.decided: set[str] = set()
        self.cancelled: set[str] = set()

    @property
    def seat_map(self) -> SeatMap:
        """Return the auditorium's seat map."""
        return seat_map_of(tuple((label, layout) for label, layout in self.rows))

    def has_decided(self, booking_id: str) -> bool:
        """Return whether a booking with this id was already booked or rejected."""
        return booking_id in self.decided

    def decide_booking(
        self,
        booking_id: str,
        seats: list[str],
        wheelchair_spaces: list[str],
        payment_method: str,
        max_seats: int,
        *,
        now: datetime,
    ) -> None:
        """Book every requested seat, or record why the booking is rejected."""
        try:
            self.book_seats(
                booking_id, seats, wheelchair_spaces, payment_method, max_seats, now=now
            )
        except BookingError as error:
            self._reject_booking(
                booking_id,
                seats,
                wheelchair_spaces,
                payment_method,
                error.code,
                error.message,
                list(error.seats),
            )

    def book_seats(
        self,
        booking_id: str,
        seats: list[str],
        wheelchair_spaces: list[str],
        payment_method: str,
        max_seats: int,
        *,
        now: datetime,
    ) -> None:
        """Book all the requested seats or none, raising BookingError when it can't.

        ``now`` is the time of the decision: bookings close when the showtime starts.
        """
        if self.has_decided(booking_id):
            raise ValueError(f"booking {booking_id} was already decided")

        self.check_not_started(now)
        self.check_seat_count(seats, wheelchair_spaces, max_seats)
        self.check_seats_on_map(seats, wheelchair_spaces)
        self.check_seats_free(seats + wheelchair_spaces)
        self._book_seats(booking_id, seats, wheelchair_spaces, payment_method)

    def cancel_booking(self, booking_id: str) -> None:
        """Release a booking's seats; raise BookingError when it cannot be cancelled."""
        if booking_id in self.cancelled:
            raise BookingAlreadyCancelledError(
                f"booking {booking_id} is already cancelled"
            )
        if booking_id not in self.bookings:
            raise BookingNotFoundError(
                f"booking {booking_id} has no seats in this showtime"
            )

        self._cancel_booking(booking_id, self.bookings[booking_id])

    def check_not_started(self, now: datetime) -> None:
        """Raise when the showtime has started, because bookings close then."""
        if now >= self.starts_at:
            msg = (
                f"showtime started at {self.starts_at.isoformat()}: bookings are closed"
            )
            raise ShowtimeStartedError(msg)

    def check_seat_count(
        self, seats: list[str], wheelchair_spaces: list[str], max_seats: int
    ) -> None:
        """Raise unless the booking requests 1 to ``max_seats`` distinct seats."""
        count = len(set(seats) | set(wheelchair_spaces))
        if count == 0:
            raise InvalidSeatsError("a booking needs at least one seat")
        if count > max_seats:
            msg = f"{count} seats requested, at most {max_seats} allowed in one booking"
            raise TooManySeatsError(msg)

    def check_seats_on_map(
        self, seats: list[str], wheelchair_spaces: list[str]
    ) -> None:
        """Raise naming every seat id that is malformed, repeated or off the map."""
        problems = find_seat_problems(self.seat_map, seats, wheelchair_spaces)
        if problems:
            detail = "; ".join(f"{p.seat_id}: {p.reason}" for p in problems)
            ids = tuple(p.seat_id for p in problems)
            raise InvalidSeatsError(f"invalid seats: {detail}", ids)

    def check_seats_free(self, seats: list[str]) -> None:
        """Raise naming every requested seat that another booking holds."""
        taken = tuple(s for s in seats if s in self.sold)
        if taken:
            raise SeatUnavailableError(
                f"seats not available: {', '.join(taken)}", taken
            )

    @event(SeatsBooked)
    def _book_seats(
        self,
        booking_id: str,
        seats: list[str],
        wheelchair_spaces: list[str],
        payment_method: str,
    ) -> None:
        all_seats = seats + wheelchair_spaces
        for seat in all_seats:
            self.sold[seat] = booking_id
        self.bookings[booking_id] = all_seats
        self.decided.add(booking_id)

    @event(BookingRejected)
    def _reject_booking(
        self,
        booking_id: str,
        seats: list[str],
        wheelchair_spaces: list[str],
        payment_method: str,
        code: str,
        reason: str,
        rejected_seats: list[str],
    ) -> None:
        self.decided.add(booking_id)

    @event(BookingCancelled)
    def _cancel_booking(self, booking_id: str, seats: list[str]) -> None:
        for seat in seats:
            self.sold.pop(seat, None)
        self.bookings.pop(booking_id, None)
        self.cancelled.add(booking_id)


def showtime_id(auditorium_id: str, starts_at: datetime) -> UUID:
    """Return the id of the showtime in ``auditorium_id`` starting at ``starts_at``."""
    return uuid5(
        SHOWTIME_NAMESPACE, f"{auditorium_id}|{starts_at.astimezone(UTC).isoformat()}"
    )
