"""The showtimes read model: schedule, seat map and sold seats of each showtime."""

from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

from pymongo.database import Database

from domain.seating import SeatMap
from domain.showtime import Showtime
from projections.views import MOVIES, SHOWTIMES
from projections.writes import BatchWrites


class ShowtimeProjection:
    """Keeps the ``showtimes`` collection in step with Showtime events."""

    def __init__(self, db: Database, zone: ZoneInfo) -> None:
        self.db = db
        self.zone = zone

    def apply(self, event: Any, writes: BatchWrites) -> None:
        """Apply one event; events of other aggregates are ignored."""
        showtime_id = str(event.originator_id)
        if isinstance(event, Showtime.Scheduled):
            fields = self.scheduled_fields(event, writes)
            writes.update(SHOWTIMES, showtime_id, {"$set": fields})
        elif isinstance(event, Showtime.SeatsBooked):
            seats = event.seats + event.wheelchair_spaces
            sold = {f"sold.{seat}": event.booking_id for seat in seats}
            writes.update(SHOWTIMES, showtime_id, {"$set": sold})
        elif isinstance(event, Showtime.BookingCancelled):
            freed = {f"sold.{seat}": "" for seat in event.seats}
            writes.update(SHOWTIMES, showtime_id, {"$unset": freed})
        elif not isinstance(event, Showtime.Event):
            return

        writes.update(
            SHOWTIMES, showtime_id, {"$set": {"version": event.originator_version}}
        )
        writes.showtimes.add(showtime_id)

    def scheduled_fields(
        self, event: Showtime.Scheduled, writes: BatchWrites
    ) -> dict[str, Any]:
        """Return the whole document of a newly scheduled showtime."""
        rows = [list(row) for row in event.rows]
        seat_map = SeatMap(tuple((label, layout) for label, layout in rows))
        # The movie may be in this batch, whose writes MongoDB does not show yet.
        if event.movie_id in writes.movie_titles:
            title = writes.movie_titles[event.movie_id]
        else:
            movie = self.db[MOVIES].find_one({"_id": event.movie_id}, {"title": 1})
            title = (movie or {}).get("title")
        return {
            "movieId": event.movie_id,
            "movieTitle": title,
            "auditoriumId": event.auditorium_id,
            "auditoriumName": event.auditorium_name,
            "startsAt": event.starts_at.astimezone(UTC),
            "localDate": event.starts_at.astimezone(self.zone).date().isoformat(),
            "rows": rows,
            "sold": {},
            "capacity": seat_map.capacity(),
        }
