"""Scheduling showtimes, and the demo week that a fresh local stack starts with."""

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError, Application

from domain.movie import Movie, MovieDetails
from domain.showtime import Showtime, showtime_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Auditorium:
    """A hall and its seat map, as rows of (label, layout); see domain.seating."""

    id: str
    name: str
    rows: tuple[tuple[str, str], ...]


def letters(count: int) -> list[str]:
    """Return the first ``count`` row labels: A, B, C ..."""
    return [chr(ord("A") + i) for i in range(count)]


# Hall 1: rows A-M of ten seats with an aisle between seats 5 and 6.
# Hall 2: wheelchair spaces at both ends of row A.
# Studio 3 numbers by position, so A5 is the gangway in the middle of each row.
DEMO_AUDITORIUMS = (
    Auditorium("hall-1", "Hall 1", tuple((r, "sssss|sssss") for r in letters(13))),
    Auditorium(
        "hall-2",
        "Hall 2",
        (("A", "ww|ssssss|ww"),) + tuple((r, "ss|ssssss|ss") for r in letters(8)[1:]),
    ),
    Auditorium("studio-3", "Studio 3", tuple((r, "ssss.ssss") for r in letters(6))),
)
DEMO_START_TIMES = (time(14, 0), time(17, 30), time(20, 45))
DEMO_DAYS = 7


class UnknownMovieError(Exception):
    """Raised when a showtime is scheduled for a movie the catalogue does not have."""


class ScheduleConflictError(ValueError):
    """Raised when the auditorium already has another movie at that start time."""


class PastStartError(ValueError):
    """Raised when a showtime is scheduled to start in the past."""


class Scheduler(Application):
    """Writes Showtime aggregates to the event store."""

    # Shares the event tables with every other Boxoffice application.
    name = "boxoffice"

    def schedule(
        self, movie_id: UUID, auditorium: Auditorium, starts_at: datetime
    ) -> UUID:
        """Schedule a showtime and return its id; scheduling it again does nothing."""
        if starts_at <= datetime.now(UTC):
            start = starts_at.isoformat()
            msg = f"start {start} is in the past: its bookings would be closed"
            raise PastStartError(msg)

        try:
            movie: object = self.repository.get(movie_id)
        except AggregateNotFoundError as error:
            raise UnknownMovieError(
                f"movie {movie_id} is not in the catalogue"
            ) from error
        if not isinstance(movie, Movie):
            raise UnknownMovieError(f"{movie_id} is not a movie")

        aggregate_id = showtime_id(auditorium.id, starts_at)
        try:
            existing: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            existing = None
        if isinstance(existing, Showtime):
            if existing.movie_id != str(movie_id):
                msg = (
                    f"{auditorium.id} at {starts_at.isoformat()} already shows movie "
                    f"{existing.movie_id} (showtime {aggregate_id})"
                )
                raise ScheduleConflictError(msg)
            return aggregate_id

        showtime = Showtime(
            movie_id=str(movie_id),
            auditorium_id=auditorium.id,
            auditorium_name=auditorium.name,
            starts_at=starts_at,
            rows=[list(row) for row in auditorium.rows],
        )
        self.save(showtime)
        return showtime.id


def demo_movies(movies: list[tuple[UUID, MovieDetails]], count: int) -> list[UUID]:
    """Pick the most voted films of the catalogue for the demo week."""
    ranked = sorted(movies, key=lambda m: (-(m[1].imdb_votes or 0), m[1].title))
    return [movie_id for movie_id, _ in ranked[:count]]


def schedule_demo_week(
    scheduler: Scheduler, movie_ids: list[UUID], first_day: date, zone: ZoneInfo
) -> list[UUID]:
    """Schedule a week of showtimes in the demo auditoriums, cycling through movies."""
    if not movie_ids:
        raise UnknownMovieError("the demo week needs at least one movie")

    scheduled: list[UUID] = []
    slot = 0
    for day in range(DEMO_DAYS):
        for auditorium in DEMO_AUDITORIUMS:
            for start in DEMO_START_TIMES:
                starts_at = datetime.combine(
                    first_day + timedelta(days=day), start, zone
                )
                movie_id = movie_ids[slot % len(movie_ids)]
                scheduled.append(scheduler.schedule(movie_id, auditorium, starts_at))
                slot += 1

    logger.info("scheduled %s demo showtimes from %s", len(scheduled), first_day)
    return scheduled
