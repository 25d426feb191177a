"""First-run data of a local stack: the sample catalogue and the demo week."""

import logging
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

from commands.catalog_import import Catalog, ImportReport, read_feed
from commands.scheduling import (
    DEMO_AUDITORIUMS,
    Scheduler,
    UnknownMovieError,
    demo_movies,
    schedule_demo_week,
)
from domain.movie import Movie, MovieDetails
from infra.adapters.event_store import EventStoreReader, postgres_env
from infra.adapters.settings import Settings
from infra.runtime.data_dir import event_store_url

logger = logging.getLogger(__name__)

DEMO_MOVIE_COUNT = 9


def sample_catalog() -> Path:
    """Return the path of the small sample catalogue shipped with Boxoffice."""
    return Path(str(resources.files("infra.runtime") / "sample_catalog.json"))


def import_catalog(url: str, path: Path) -> ImportReport:
    """Import the catalogue at ``path`` into the event store at ``url``."""
    records = read_feed(path)
    catalog = Catalog(env=postgres_env(url))
    try:
        return catalog.import_feed(records)
    finally:
        catalog.close()


def schedule_movies(
    url: str, movies: list[tuple[UUID, MovieDetails]], first_day: date, zone: ZoneInfo
) -> int:
    """Schedule the demo week for the most voted of ``movies``."""
    scheduler = Scheduler(env=postgres_env(url))
    try:
        chosen = demo_movies(movies, DEMO_MOVIE_COUNT)
        return len(schedule_demo_week(scheduler, chosen, first_day, zone))
    finally:
        scheduler.close()


def schedule_demo(url: str, first_day: date, zone: ZoneInfo) -> int:
    """Schedule the demo week for the most voted films already in the event store."""
    reader = EventStoreReader(env=postgres_env(url))
    try:
        movies = [
            (movie.id, movie_details(movie.details))
            for movie in all_movies(reader)
            if isinstance(movie, Movie)
        ]
    finally:
        reader.close()
    return schedule_movies(url, movies, first_day, zone)


def all_movies(reader: EventStoreReader) -> list[object]:
    """Return every Movie aggregate in the store."""
    topic = f"{Movie.__module__}:{Movie.Registered.__qualname__}"
    ids: list[UUID | str] = []
    position = 0
    while True:
        notifications = reader.select_notifications(position, 500)
        if not notifications:
            break
        ids += [n.originator_id for n in notifications if n.topic == topic]
        position = notifications[-1].id
    return [reader.repository.get(i) for i in ids]


def movie_details(fields: dict) -> MovieDetails:
    """Rebuild MovieDetails from the fields stored in a Movie event."""
    release = fields.get("release_date")
    return MovieDetails(
        **{**fields, "release_date": date.fromisoformat(release) if release else None}
    )


def schedule_one(
    settings: Settings,
    data_dir: Path,
    movie_id: UUID,
    auditorium_id: str,
    starts_at: datetime,
) -> UUID:
    """Schedule one showtime, raising ValueError for an unknown hall or movie."""
    halls = {a.id: a for a in DEMO_AUDITORIUMS}
    if auditorium_id not in halls:
        raise ValueError(
            f"unknown auditorium {auditorium_id!r}; use one of {sorted(halls)}"
        )
    if starts_at.tzinfo is None:
        raise ValueError(
            f"start {starts_at.isoformat()} needs a time zone, e.g. +00:00"
        )

    with event_store_url(settings, data_dir) as url:
        scheduler = Scheduler(env=postgres_env(url))
        try:
            return scheduler.schedule(movie_id, halls[auditorium_id], starts_at)
        except UnknownMovieError as error:
            raise ValueError(str(error)) from error
        finally:
            scheduler.close()
