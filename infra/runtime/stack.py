"""The local stack behind ``boxoffice up``: services, first-run data and processes.

See ``infra.runtime.data_dir`` for the lock that keeps two stacks off one data
folder, and ``infra.runtime.seeding`` for the data a new stack starts with.
"""

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from aiokafka.errors import KafkaError
from rich.console import Console

from infra.adapters import kafka, mongo
from infra.adapters.event_store import EventStoreReader, create_tables, postgres_env
from infra.adapters.settings import Settings
from infra.runtime import embedded
from infra.runtime.data_dir import (
    URLS_FILE,
    StackStartError,
    check_port_free,
    write_urls,
)
from infra.runtime.logs import FORMAT as LOG_FORMAT
from infra.runtime.seeding import import_catalog, sample_catalog, schedule_movies
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


READY_TIMEOUT_S = 120.0
CHILDREN_FILE = "children.json"
READY_POLL_INTERVAL_S = 0.2


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
            example = self.wait_for_api(api, stop_requested)
        if example is None:
            return
        self.print_welcome(api, *example)

    def wait_for_api(
        self, api: str, stop_requested: Callable[[], bool]
    ) -> tuple[str, str] | None:
        """Wait until the API serves a seat map; return a showtime id and a free seat.

        wait_until_ready runs in a daemon thread, so that this thread can restart
        workers that exit and fail fast when the API exits. Restarting the API
        would not help, because it exits at start for lasting reasons such as a
        port in use or an import error. Returns None when ``stop_requested()``
        becomes true first.
        """
        ready: Future[tuple[str, str]] = Future()

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
            f"{len(report.rejected)} rejected "
            "(`./dev import-movies` on the same file lists each reason)."
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
            "--log-config",
            str(write_api_log_config(logs)),
        )
        return [*workers, Child("api", api_command, logs / "api.log")]

    def print_welcome(self, api: str, showtime_id: str, seat: str) -> None:
        """Print where the system listens and a curl line that books a free seat."""
        body = json.dumps(
            {"showtimeId": showtime_id, "seats": [seat], "paymentMethod": "card"}
        )
        # A fresh key each start, because a reused key with another body is a 422.
        key = f"demo-{uuid.uuid4().hex[:8]}"
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
            "-H 'Content-Type: application/json' "
            f"-H 'Idempotency-Key: {key}' "
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


def write_api_log_config(log_dir: Path) -> Path:
    """Write the API's logging configuration: timestamped lines, like the workers'."""
    formatter = {"format": LOG_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "plain"}
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": formatter},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"level": "INFO"},
            "aiokafka": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
        },
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "api-logging.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def initialise(settings: Settings) -> None:
    """Create tables, topics and indexes once, before any worker starts."""
    create_tables(settings.require("POSTGRES_URL"))
    asyncio.run(kafka.create_topics(settings))
    create_indexes(mongo.database(settings))


def wait_until_ready(api: str, timeout: float) -> tuple[str, str]:
    """Wait until the API serves a seat map; return a showtime id and a free seat.

    The example booking prefers Hall 1, whose seats are all ordinary seats, so the
    printed curl line books one whatever the demo schedule holds.
    """
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        try:
            example = example_booking(api)
            if example is not None:
                return example
            last_error = "no showtime with a free seat is readable yet"
        except (httpx.HTTPError, ValueError, KeyError) as error:
            last_error = repr(error)
        time.sleep(0.5)
    raise RuntimeError(
        f"the API at {api} was not ready after {timeout:.0f} s: {last_error}"
    )


def example_booking(api: str) -> tuple[str, str] | None:
    """Return a showtime id and one of its free ordinary seats, or None."""
    response = httpx.get(f"{api}/showtimes", timeout=2.0)
    if response.status_code != 200 or not response.json():
        return None

    showtimes = response.json()
    hall_1 = [s for s in showtimes if s["auditoriumId"] == "hall-1"]
    showtime_id = str((hall_1 or showtimes)[0]["id"])
    seat_map = httpx.get(f"{api}/showtimes/{showtime_id}/seats", timeout=2.0)
    if seat_map.status_code != 200:
        return None

    for row in seat_map.json()["rows"]:
        for position in row["positions"]:
            if position["kind"] == "standard" and position["state"] == "free":
                return showtime_id, str(position["seat"])
    return None
