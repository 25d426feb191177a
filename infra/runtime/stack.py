"""The local stack behind ``boxoffice up``: services, first-run data and the processes.

The URLs of a running stack are written to ``<data_dir>/urls.json``, so that other
commands on the same data folder (``import-movies``, ``schedule``) use its services
instead of starting their own.
"""

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
from rich.console import Console

from commands.catalog_import import Catalog, CatalogFileError, ImportReport, read_feed
from commands.scheduling import (
    DEMO_AUDITORIUMS,
    Scheduler,
    demo_movies,
    schedule_demo_week,
)
from domain.movie import Movie, MovieDetails
from infra.adapters import kafka, mongo
from infra.adapters.event_store import EventStoreReader, create_tables, postgres_env
from infra.adapters.settings import Settings
from infra.runtime import embedded
from infra.runtime.supervisor import Child, Supervisor, child_env, python_command
from projections.indexes import create_indexes

logger = logging.getLogger(__name__)

__all__ = ["CatalogFileError", "LocalStack"]

DEMO_MOVIE_COUNT = 9
READY_TIMEOUT_S = 120.0


class LocalStack:
    """Embedded services, the event store's first data, and the supervised processes."""

    def __init__(self, settings: Settings, data_dir: Path, console: Console) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.console = console
        self.services: list[embedded.EmbeddedService] = []
        self.supervisor = Supervisor([], {})

    def start(self, catalog: Path | None) -> None:
        """Start everything, then print the URLs and a booking example."""
        with self.console.status(
            "Starting services (PostgreSQL, Redis, Kafka, MongoDB) ..."
        ):
            env, self.services = embedded.start_missing(self.settings, self.data_dir)
        for service in self.services:
            self.console.print(
                f"  embedded {service.name}: {service.url}", soft_wrap=True
            )
        # Every process of the stack, this one included, reads the same variables.
        os.environ.update(env)
        settings = Settings()
        write_urls(self.data_dir, env)

        with self.console.status("Creating tables, topics and indexes ..."):
            initialise(settings)
        self.seed(settings, catalog)

        self.supervisor = Supervisor(self.children(settings), child_env(env))
        self.supervisor.start()
        api = f"http://{settings.API_HOST}:{settings.API_PORT}"
        with self.console.status("Waiting for the API and the read models ..."):
            showtime_id = wait_until_ready(api, READY_TIMEOUT_S)
        self.print_welcome(api, showtime_id)

    def seed(self, settings: Settings, catalog: Path | None) -> None:
        """Import a catalogue and schedule a demo week when the event store is empty."""
        url = settings.require("POSTGRES_URL")
        reader = EventStoreReader(env=postgres_env(url))
        empty = reader.max_notification_id() == 0
        reader.close()
        if not empty:
            self.console.print("Event store has data: keeping it (no import).")
            return

        path = catalog or sample_catalog()
        with self.console.status(f"Importing catalogue {path} ..."):
            report = import_catalog(url, path)
        self.console.print(
            f"Imported {report.registered} movies from {path}; "
            f"{len(report.rejected)} records rejected "
            "(see `boxoffice import-movies` for each reason)."
        )
        zone = ZoneInfo(settings.TIMEZONE)
        first_day = datetime.now(zone).date() + timedelta(days=1)
        with self.console.status("Scheduling a demo week of showtimes ..."):
            count = schedule_movies(url, report.movies, first_day, zone)
        self.console.print(f"Scheduled {count} showtimes from {first_day}.")

    def children(self, settings: Settings) -> list[Child]:
        """Return the processes of the system, in start order."""
        logs = self.data_dir / "logs"
        workers = [
            Child(
                name,
                python_command("-m", "infra.runtime.cli", "worker", name),
                logs / f"{name}.log",
            )
            for name in ("processor", "relay", "projector")
        ]
        api_command = python_command(
            "-m",
            "uvicorn",
            "read_api.app:create_app",
            "--factory",
            "--host",
            settings.API_HOST,
            "--port",
            str(settings.API_PORT),
            "--no-access-log",
        )
        return [*workers, Child("api", api_command, logs / "api.log")]

    def print_welcome(self, api: str, showtime_id: str) -> None:
        """Print where the system listens and a curl line that books a seat."""
        body = json.dumps(
            {"showtimeId": showtime_id, "seats": ["A1"], "paymentMethod": "card"}
        )
        # soft_wrap keeps the curl line whole, so it can be copied.
        self.console.print(
            f"\n[bold green]Boxoffice is running[/bold green] at {api}\n"
            f"  API docs:   {api}/docs\n"
            f"  Movies:     {api}/movies\n"
            f"  Showtimes:  {api}/showtimes\n"
            f"  Seat map:   {api}/showtimes/{showtime_id}/seats\n"
            f"  Logs:       {self.data_dir / 'logs'}\n\n"
            "Book a seat and wait up to 5 s for the outcome:\n"
            f"  curl -s -X POST '{api}/book-tickets?wait=5000' "
            "-H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' "
            f"-d '{body}'\n\n"
            "Press Ctrl-C to stop.",
            soft_wrap=True,
        )

    def stop(self) -> None:
        """Stop the processes, then the embedded services, in reverse start order."""
        self.supervisor.stop()
        for service in reversed(self.services):
            service.stop()
        (self.data_dir / "urls.json").unlink(missing_ok=True)


def initialise(settings: Settings) -> None:
    """Create tables, topics and indexes once, before any worker starts."""
    create_tables(settings.require("POSTGRES_URL"))
    asyncio.run(kafka.create_topics(settings))
    create_indexes(mongo.database(settings))


def wait_until_ready(api: str, timeout: float) -> str:
    """Wait until the API lists a showtime, and return the first one's id."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{api}/showtimes", timeout=2.0)
            if response.status_code == 200 and response.json():
                return str(response.json()[0]["id"])
            last_error = f"GET /showtimes answered {response.status_code}"
        except httpx.HTTPError as error:
            last_error = repr(error)
        time.sleep(0.5)
    raise RuntimeError(
        f"the API at {api} was not ready after {timeout:.0f} s: {last_error}"
    )


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
    movie_id: str,
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
            return scheduler.schedule(UUID(movie_id), halls[auditorium_id], starts_at)
        except Exception as error:
            raise ValueError(str(error)) from error
        finally:
            scheduler.close()


@contextmanager
def event_store_url(settings: Settings, data_dir: Path) -> Iterator[str]:
    """Yield the event store URL: configured, that of a running stack, or embedded."""
    if settings.POSTGRES_URL:
        create_tables(settings.POSTGRES_URL)
        yield settings.POSTGRES_URL
        return

    running = read_urls(data_dir).get("BOXOFFICE_POSTGRES_URL")
    if running:
        yield running
        return

    service = embedded.start_postgres(data_dir)
    try:
        create_tables(service.url)
        yield service.url
    finally:
        service.stop()


def running_settings(data_dir: Path) -> Settings:
    """Return settings with the URLs of the stack running on ``data_dir`` filled in."""
    os.environ.update(
        {k: v for k, v in read_urls(data_dir).items() if k not in os.environ}
    )
    return Settings()


def write_urls(data_dir: Path, env: dict[str, str]) -> None:
    """Record the running stack's service URLs in the data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "urls.json").write_text(json.dumps(env, indent=2))


def read_urls(data_dir: Path) -> dict[str, str]:
    """Return the service URLs of a stack running on ``data_dir``, or an empty dict."""
    path = data_dir / "urls.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))
