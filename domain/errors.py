"""Errors raised by domain rules, each carrying the ids a caller needs to report it."""


class BookingError(Exception):
    """Raised when a booking command breaks a rule of its showtime."""

    code = "booking_error"

    def __init__(self, message: str, seats: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.seats = seats


class InvalidSeatsError(BookingError):
    """Raised when requested seat ids are malformed, repeated or not on the seat map."""

    code = "invalid_seats"


class SeatUnavailableError(BookingError):
    """Raised when a requested seat is already sold to another booking."""

    code = "seats_unavailable"


class TooManySeatsError(BookingError):
    """Raised when a booking requests more seats than one booking may contain."""

    code = "too_many_seats"


class ShowtimeStartedError(BookingError):
    """Raised when a booking arrives at or after the showtime's start."""

    code = "showtime_started"


class BookingNotFoundError(BookingError):
    """Raised when a command names a booking its showtime has not sold."""

    code = "booking_not_found"


class BookingAlreadyCancelledError(BookingError):
    """Raised when a cancelled booking is cancelled again."""

    code = "already_cancelled"
