"""Movies and showtimes in a benchmark's event store, and the seats to book in them."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

from commands.catalog_import import Catalog
from commands.scheduling import DEMO_AUDITORIUMS, Scheduler
from domain.seating import SeatKind, SeatMap
from infra.adapters.event_store import postgres_env

# Hall 1 of the demo cinema: rows A-M of ten seats, 130 seats in all.
HALL = DEMO_AUDITORIUMS[0]
SEAT_IDS = tuple(
    position.seat_id
    for position in SeatMap(HALL.rows).positions()
    if position.kind is SeatKind.STANDARD
)


class ShowtimeScheduler:
    """Schedules new showtimes in Hall 1, each at a start time not used before."""

    def __init__(self, postgres_url: str, movie_id: UUID) -> None:
        self.scheduler = Scheduler(env=postgres_env(postgres_url))
        self.movie_id = movie_id
        # Starts are whole minutes from a fixed day a year ahead, so showtime ids
        # (derived from hall and start) never repeat within one database.
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.next_start = today + timedelta(days=365)

    def schedule(self, count: int) -> list[str]:
        """Schedule ``count`` showtimes and return their ids."""
        ids = []
        for _ in range(count):
            ids.append(
                str(self.scheduler.schedule(self.movie_id, HALL, self.next_start))
            )
            self.next_start += timedelta(minutes=1)
        return ids

    def close(self) -> None:
        """Close the event store connections."""
        self.scheduler.close()


def import_movies(postgres_url: str, records: list[object]) -> list[UUID]:
    """Import catalogue records and return the ids of the movies in them."""
    catalog = Catalog(env=postgres_env(postgres_url))
    try:
        report = catalog.import_feed(records)
    finally:
        catalog.close()
    return [movie_id for movie_id, _ in report.movies]
