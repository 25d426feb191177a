"""The bookings read model: the outcome of every booking, for ticket queries."""

from typing import Any

from pymongo.database import Database

from domain.showtime import Showtime
from projections.views import BOOKINGS, SHOWTIMES
from projections.writes import BatchWrites


class BookingProjection:
    """Keeps the ``bookings`` collection in step with Showtime booking events."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # A showtime's movie, start and hall never change, so they are kept here.
        self.showtime_details: dict[str, dict[str, Any]] = {}

    def apply(self, event: Any, writes: BatchWrites) -> None:
        """Apply one event; events that decide no booking are ignored."""
        if isinstance(event, Showtime.Scheduled):
            self.showtime_details[str(event.originator_id)] = {
                "movieId": event.movie_id,
                "startsAt": event.starts_at,
                "auditoriumName": event.auditorium_name,
            }
            return

        if isinstance(event, Showtime.SeatsBooked):
            fields = {
                "status": "confirmed",
                "seats": event.seats,
                "wheelchairSpaces": event.wheelchair_spaces,
                "paymentMethod": event.payment_method,
            }
        elif isinstance(event, Showtime.BookingRejected):
            fields = {
                "status": "rejected",
                "seats": event.seats,
                "wheelchairSpaces": event.wheelchair_spaces,
                "paymentMethod": event.payment_method,
                "reason": event.reason,
                "reasonCode": event.code,
                "rejectedSeats": event.rejected_seats,
            }
        elif isinstance(event, Showtime.BookingCancelled):
            fields = {"status": "cancelled"}
        else:
            return

        self.write(event, fields, writes)

    def write(self, event: Any, fields: dict[str, Any], writes: BatchWrites) -> None:
        """Queue the booking's new state, with its showtime's details."""
        showtime_id = str(event.originator_id)
        fields |= self.details_of(showtime_id)
        fields |= {
            "showtimeId": showtime_id,
            "updatedAt": event.timestamp,
            "version": event.originator_version,
        }
        writes.update(BOOKINGS, event.booking_id, {"$set": fields})
        writes.bookings.add(event.booking_id)

    def details_of(self, showtime_id: str) -> dict[str, Any]:
        """Return the showtime's movie, start and hall, read once from MongoDB."""
        details = self.showtime_details.get(showtime_id)
        if details is None:
            projection = {"movieId": 1, "startsAt": 1, "auditoriumName": 1, "_id": 0}
            details = self.db[SHOWTIMES].find_one({"_id": showtime_id}, projection)
            if details is None:
                return {}
            self.showtime_details[showtime_id] = details
        return details
