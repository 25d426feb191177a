"""A whole Boxoffice system per test: the API, processor, relay and projector as
child processes on the session's real servers, with fresh names for the data."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from commands.catalog_import import Catalog, read_feed
from commands.scheduling import DEMO_AUDITORIUMS, Scheduler
from infra.adapters.event_store import create_tables, postgres_env
from infra.adapters.settings import Settings
from infra.runtime.embedded import free_port
from tests.conftest import CATALOG_PATH, settings_env

WORKERS = ("processor", "relay", "projector")
READY_TIMEOUT_S = 60.0


@dataclass
class Stack:
    """The running processes of one system, and how to reach its API."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    api: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(
        self, name: str, worker: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        """Start a process: ``api``, or a worker named ``name`` (or ``worker``)."""
        if name == "api":
            port = free_port()
            self.api = f"http://127.0.0.1:{port}"
            command = [
                sys.executable, "-m", "uvicorn", "read_api.app:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            ]  # fmt: skip
        else:
            worker = worker or name
            command = [sys.executable, "-m", "infra.runtime.cli", "worker", worker]
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            command,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def send_signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to a running process."""
        self.processes[name].send_signal(signum)

    def stop(self, name: str, signum: int = signal.SIGTERM) -> None:
        """Stop one process with ``signum`` and wait for it."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signum)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def client(self) -> httpx.Client:
        """Return an HTTP client for the API."""
        return httpx.Client(base_url=self.api, timeout=30.0)

    def log(self, name: str) -> str:
        """Return what one process has logged so far."""
        return (self.log_dir / f"{name}.log").read_text(errors="replace")


def wait_for(predicate, timeout: float, message: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"{message} within {timeout} s")


def api_answers(stack: Stack) -> bool:
    """Return whether the API's health check passes."""
    try:
        return httpx.get(f"{stack.api}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """Start a whole system; stop every process after the test."""
    create_tables(settings.require("POSTGRES_URL"))
    env = {**os.environ, **settings_env(settings)}
    system = Stack(settings, env, tmp_path)
    for name in (*WORKERS, "api"):
        system.start(name)
    try:
        wait_for(lambda: api_answers(system), READY_TIMEOUT_S, "the API did not answer")
        yield system
    finally:
        for name in list(system.processes):
            system.stop(name)


@pytest.fixture
def catalog_movies(settings: Settings) -> list[UUID]:
    """Import the real 3,201-film catalogue; return the ids of the films imported."""
    catalog = Catalog(
        env=postgres_env(settings.require("POSTGRES_URL"), create_table=True)
    )
    try:
        report = catalog.import_feed(read_feed(CATALOG_PATH))
    finally:
        catalog.close()
    return [movie_id for movie_id, _ in report.movies]


def schedule_showtime(
    settings: Settings, movie_id: UUID, hall: int = 0, hours: int = 24
) -> str:
    """Schedule a showtime in one of the demo halls, ``hours`` from now."""
    scheduler = Scheduler(env=postgres_env(settings.require("POSTGRES_URL")))
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=hours)
    try:
        return str(scheduler.schedule(movie_id, DEMO_AUDITORIUMS[hall], starts_at))
    finally:
        scheduler.close()


def wait_for_showtime(stack: Stack, showtime_id: str, timeout: float = 60.0) -> None:
    """Wait until the showtime's seat map is readable through the API."""

    def readable() -> bool:
        return (
            httpx.get(f"{stack.api}/showtimes/{showtime_id}/seats").status_code == 200
        )

    wait_for(readable, timeout, f"showtime {showtime_id} did not reach the read model")
