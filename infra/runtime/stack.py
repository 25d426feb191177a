"""The local stack behind ``boxoffice up``: services, first-run data and the processes.

``boxoffice up`` holds an exclusive lock on ``<data_dir>/boxoffice.lock`` while it
runs, so two stacks never share a data folder. The URLs of a running stack are
written to ``<data_dir>/urls.json``, so that other commands on the same data folder
(``import-movies``, ``schedule``) use its services instead of starting their own.
The file is trusted only while a live process holds the lock: one left by a killed
run is ignored.
"""

import asyncio
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
from aiokafka.errors import KafkaError
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
from infra.runtime.supervisor import (
    Child,
    RestartSchedule,
    Supervisor,
    child_env,
    python_command,
    stop_leftover_children,
)
from projections.indexes import create_indexes

logger = logging.getLogger(__name__)

__all__ = [
    "CatalogFileError",
    "DataDirLock",
    "DataDirLockedError",
    "LocalStack",
    "StackStartError",
    "lock_data_dir",
]

DEMO_MOVIE_COUNT = 9
READY_TIMEOUT_S = 120.0
LOCK_FILE = "boxoffice.lock"
URLS_FILE = "urls.json"
CHILDREN_FILE = "children.json"
# data_dir_in_use() holds a shared lock for a moment, so taking the exclusive lock
# is retried for about half a second before another holder is reported.
LOCK_ATTEMPTS = 5
LOCK_RETRY_INTERVAL_S = 0.1
# How long a command waits for a starting stack to record its service URLs.
RUNNING_URLS_TIMEOUT_S = 120.0
READY_POLL_INTERVAL_S = 0.2


class StackStartError(RuntimeError):
    """A failed start of the local stack, with the reason and the fix in its message."""


class DataDirLockedError(RuntimeError):
    """Another live process holds the lock on a data folder."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        holder = f" (pid {pid})" if pid else ""
        stop_hint = f" (Ctrl-C in its terminal, or kill {pid})" if pid else ""
        super().__init__(
            f"the data folder {data_dir} is in use by another Boxoffice process"
            f"{holder}. Stop that process{stop_hint}, or pass another --data-dir."
        )


class LocalStack:
    """Embedded services, the event store's first data, and the supervised processes."""

    def __init__(self, settings: Settings, data_dir: Path, console: Console) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.console = console
        self.services: list[embedded.EmbeddedService] = []
        self.service_schedules: dict[str, RestartSchedule] = {}
        self.supervisor = Supervisor([], {})

    def start(
        self, catalog: Path | None, stop_requested: Callable[[], bool] = lambda: False
    ) -> None:
        """Start everything, then print the URLs and a booking example.

        The caller must hold the data folder's lock (see lock_data_dir), because
        processes that an earlier, killed run left on the data folder are stopped
        first. Returns early, without the welcome, once ``stop_requested()`` is
        true while waiting for the API. Raises StackStartError when the API port
        is in use, when the API exits during the wait or when it is not ready in
        time, and EmbeddedServiceError when an embedded server fails to start.
        """
        (self.data_dir / URLS_FILE).unlink(missing_ok=True)
        stop_leftover_children(self.data_dir / CHILDREN_FILE)
        check_port_free(self.settings.API_HOST, self.settings.API_PORT)

        with self.console.status(
            "Starting services (PostgreSQL, Redis, Kafka, MongoDB) ..."
        ):
            env, self.services = embedded.start_missing(self.settings, self.data_dir)
        started_at = time.monotonic()
        self.service_schedules = {
            service.name: RestartSchedule(started_at=started_at)
            for service in self.services
        }
        for service in self.services:
            self.console.print(
                f"  embedded {service.name}: {service.url}", soft_wrap=True
            )
        # Every process of the stack, this one included, reads the same variables.
        os.environ.update(env)
        settings = self.settings = Settings()
        write_urls(self.data_dir, env)

        with self.console.status("Creating tables, topics and indexes ..."):
            initialise(settings)
        self.seed(settings, catalog)

        self.supervisor = Supervisor(
            self.children(settings), child_env(env), self.data_dir / CHILDREN_FILE
        )
        self.supervisor.start()
        api = f"http://{settings.API_HOST}:{settings.API_PORT}"
        with self.console.status("Waiting for the API and the read models ..."):
            showtime_id = self.wait_for_api(api, stop_requested)
        if showtime_id is None:
            return
        self.print_welcome(api, showtime_id)

    def wait_for_api(self, api: str, stop_requested: Callable[[], bool]) -> str | None:
        """Wait until the API lists a showtime and return the first one's id.

        wait_until_ready runs in a daemon thread, so that this thread can restart
        workers that exit and fail fast when the API exits. Restarting the API
        would not help, because it exits at start for lasting reasons such as a
        port in use or an import error. Returns None when ``stop_requested()``
        becomes true first.
        """
        ready: Future[str] = Future()

        def wait() -> None:
            try:
                ready.set_result(wait_until_ready(api, READY_TIMEOUT_S))
            except Exception as error:
                ready.set_exception(error)

        threading.Thread(target=wait, name="wait-until-ready", daemon=True).start()
        api_child = self.supervisor.child("api")
        while not ready.done():
            if stop_requested():
                return None
            exit_code = api_child.process.poll() if api_child.process else None
            if exit_code is not None:
                raise StackStartError(
                    f"the API exited with code {exit_code} while starting on {api}. "
                    f"Last lines of {api_child.log_path}:\n{api_child.log_tail()}"
                )
            self.supervisor.check()
            time.sleep(READY_POLL_INTERVAL_S)
        try:
            return ready.result()
        except RuntimeError as error:
            raise StackStartError(
                f"{error}. The logs are in {self.data_dir / 'logs'}"
            ) from error

    def check(self) -> None:
        """Restart each child process or embedded server that exited, after a delay."""
        self.supervisor.check()
        for index in range(len(self.services)):
            self.check_service(index)

    def check_service(self, index: int) -> None:
        """Restart the embedded server ``self.services[index]`` when it exited.

        The new server gets the same port and data folder, so the URLs in the
        children's environment stay valid. PostgreSQL and SecantusDB keep their
        data. Redis and Tansu start empty: Redis holds only rebuildable data, and
        the processor and relay notice the emptied topics.
        """
        service = self.services[index]
        exit_code = service.process.poll()
        if exit_code is None:
            return
        schedule = self.service_schedules[service.name]
        now = time.monotonic()
        if not schedule.scheduled:
            delay = schedule.schedule(now)
            logger.error(
                "Embedded %s (pid %d) exited with code %d; restarting it on port %s "
                "in %.0f s (see %s)",
                service.name,
                service.process.pid,
                exit_code,
                service.port,
                delay,
                service.log_path,
            )
            return
        if not schedule.due(now):
            return

        schedule.record_start(now, restart=True)
        try:
            restarted = embedded.restart_service(service, self.data_dir)
        except embedded.EmbeddedServiceError as error:
            delay = schedule.schedule(time.monotonic())
            logger.error(
                "Restarting embedded %s on port %s failed; retrying in %.0f s: %s",
                service.name,
                service.port,
                delay,
                error,
            )
            return
        self.services[index] = restarted
        logger.warning(
            "Restarted embedded %s (pid %d) at %s",
            restarted.name,
            restarted.process.pid,
            restarted.url,
        )
        if restarted.name == "kafka":
            self.create_topics()

    def create_topics(self) -> None:
        """Create the topics on a restarted, empty Kafka.

        This must happen before a producer sends to a missing topic, because the
        broker would then create it with its default partition count.
        """
        try:
            asyncio.run(kafka.create_topics(self.settings))
        except (KafkaError, OSError) as error:
            # NOTE: a producer may have created a topic with the broker's default
            # partition count before this call; nothing repairs that here.
            logger.error("Creating the topics on the restarted Kafka failed: %s", error)

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
        (self.data_dir / URLS_FILE).unlink(missing_ok=True)


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
    """Yield the event store URL: configured, that of a running stack, or embedded.

    An embedded PostgreSQL runs only while this process holds the data folder's
    lock, so that a ``boxoffice up`` started meanwhile does not stop it as a
    leftover.
    """
    if settings.POSTGRES_URL:
        create_tables(settings.POSTGRES_URL)
        yield settings.POSTGRES_URL
        return

    lock_or_url = lock_or_running_url(data_dir, "BOXOFFICE_POSTGRES_URL")
    if isinstance(lock_or_url, str):
        yield lock_or_url
        return

    try:
        service = embedded.start_postgres(data_dir)
        try:
            create_tables(service.url)
            yield service.url
        finally:
            service.stop()
    finally:
        lock_or_url.release()


class DataDirLock:
    """An exclusive flock on ``<data_dir>/boxoffice.lock``, which records the pid.

    The kernel releases the lock when the holder exits in any way, SIGKILL
    included, so a held lock means a live holder. Child processes do not inherit
    it, because Python opens file descriptors as non-inheritable and subprocess
    closes the others by default.
    """

    def __init__(self, data_dir: Path, descriptor: int) -> None:
        self.data_dir = data_dir
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        """Release the lock. A second call does nothing."""
        if self._descriptor is None:
            return
        fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        os.close(self._descriptor)
        self._descriptor = None


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Take the exclusive lock on ``data_dir`` without blocking, and record the pid.

    Raises DataDirLockedError, with the holder's pid, when another process holds
    the lock.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    # Opened without truncation, because the holder's pid must stay readable.
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == LOCK_ATTEMPTS:
                os.close(descriptor)
                raise DataDirLockedError(data_dir, lock_holder_pid(path)) from None
            time.sleep(LOCK_RETRY_INTERVAL_S)
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(data_dir, descriptor)


def lock_holder_pid(path: Path) -> int | None:
    """Return the pid recorded in the lock file, or None when there is none."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def data_dir_in_use(data_dir: Path) -> bool:
    """Return whether a live process, this one included, holds the data folder lock."""
    try:
        descriptor = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        # A second open file description conflicts with every other one, even
        # one of this process, so the holder's own check also finds it locked.
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def lock_or_running_url(
    data_dir: Path, variable: str, timeout: float = RUNNING_URLS_TIMEOUT_S
) -> DataDirLock | str:
    """Return the data folder's lock, or the URL ``variable`` of the stack using it.

    A stack that is still starting records its URLs a little after it takes the
    lock, so this waits up to ``timeout`` seconds for them, and re-raises
    DataDirLockedError after that.
    """
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            return lock_data_dir(data_dir)
        except DataDirLockedError as locked:
            url = read_urls(data_dir).get(variable)
            if url:
                return url
            if time.monotonic() >= deadline:
                raise
            if not waiting:
                waiting = True
                logger.info(
                    "Waiting up to %.0f s for the process (pid %s) on %s to record "
                    "its service URLs",
                    timeout,
                    locked.pid,
                    data_dir,
                )
        time.sleep(0.5)


def check_port_free(host: str, port: int) -> None:
    """Raise StackStartError naming ``port`` when a program already listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # uvicorn sets this too, so a port in TIME_WAIT after an earlier run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise StackStartError(
                f"cannot start the API on {host}:{port}: {error.strerror}"
                f"{port_holder(port)}. Stop the program that uses port {port}, "
                "or pass another --port."
            ) from error


def port_holder(port: int) -> str:
    """Return " (pid N: command)" for the process listening on ``port``, or "".

    Finding it needs psutil and, for other users' processes, root.
    """
    try:
        import psutil
    except ImportError:
        return ""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return ""
    for connection in connections:
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr.port == port
            and connection.pid is not None
        ):
            try:
                command = " ".join(psutil.Process(connection.pid).cmdline())
            except psutil.Error:
                command = "command unknown"
            return f" (pid {connection.pid}: {command})"
    return ""


def running_settings(data_dir: Path) -> Settings:
    """Return settings with the URLs of the stack running on ``data_dir`` filled in."""
    os.environ.update(
        {k: v for k, v in read_urls(data_dir).items() if k not in os.environ}
    )
    return Settings()


def write_urls(data_dir: Path, env: dict[str, str]) -> None:
    """Record the running stack's service URLs in the data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / URLS_FILE).write_text(json.dumps(env, indent=2))


def read_urls(data_dir: Path) -> dict[str, str]:
    """Return the service URLs of a stack running on ``data_dir``, or an empty dict.

    The recorded URLs are ignored when no live process holds the data folder's
    lock, because then they are left from a run that was killed.
    """
    path = data_dir / URLS_FILE
    if not path.exists():
        return {}
    if not data_dir_in_use(data_dir):
        logger.info("Ignoring stale %s: no live process holds %s", path, LOCK_FILE)
        return {}
    return dict(json.loads(path.read_text()))
