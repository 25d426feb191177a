"""The ``boxoffice`` command: run the system locally, import catalogues, run workers."""

import asyncio
import json
import logging
import os
import signal
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape

from commands.catalog_import import CatalogFileError
from infra.adapters.lag import consumer_lag
from infra.adapters.settings import Settings
from infra.runtime import data_dir as data_dir_module
from infra.runtime import seeding, stack
from infra.runtime.embedded import EmbeddedServiceError
from infra.runtime.logs import configure_logging

app = typer.Typer(
    help="Boxoffice: an event-sourced movie ticket booking system.",
    no_args_is_help=True,
    add_completion=False,
)
# soft_wrap keeps long paths and messages on one line, for grep and copy.
console = Console(stderr=True, soft_wrap=True)
logger = logging.getLogger(__name__)

DataDir = Annotated[
    Path,
    typer.Option(help="Folder for the embedded services' data, logs and URLs."),
]


@app.command()
def up(
    data_dir: DataDir = Path(".boxoffice"),
    port: Annotated[int, typer.Option(help="API port on 127.0.0.1.")] = 8000,
    catalog: Annotated[
        Path | None,
        typer.Option(help="Catalogue JSON to import when the event store is empty."),
    ] = None,
) -> None:
    """Start the whole system locally and run it until Ctrl-C."""
    data_dir = data_dir.resolve()
    configure_logging(
        data_dir / "logs" / "boxoffice.log", console_level=logging.WARNING
    )
    # Held until this process exits, so a second `up` on the folder fails at once.
    try:
        lock = data_dir_module.lock_data_dir(data_dir)
    except data_dir_module.DataDirLockedError as error:
        console.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(1) from error

    os.environ["BOXOFFICE_API_PORT"] = str(port)
    local = stack.LocalStack(Settings(), data_dir, console)

    stopping = False

    def request_stop(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    failed = False
    try:
        local.start(catalog, stop_requested=lambda: stopping)
        while not stopping:
            local.check()
            time.sleep(0.5)
    except (data_dir_module.StackStartError, EmbeddedServiceError) as error:
        # Logged at ERROR, so it reaches both the terminal and boxoffice.log.
        logger.error("Boxoffice failed to start: %s", error)
        failed = True
    finally:
        console.print("Stopping Boxoffice ...")
        local.stop()
        lock.release()
        console.print("Stopped.")
    if failed:
        raise typer.Exit(1)


@app.command("import-movies")
def import_movies(
    path: Annotated[Path, typer.Argument(help="Catalogue file: a JSON list of films.")],
    data_dir: DataDir = Path(".boxoffice"),
) -> None:
    """Import a catalogue file, reporting every rejected record with its index."""
    configure_logging(None, console_level=logging.WARNING)
    with data_dir_module.event_store_url(Settings(), data_dir.resolve()) as url:
        try:
            report = seeding.import_catalog(url, path)
        except CatalogFileError as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from error

    for rejected in report.rejected:
        console.print(f"rejected record {rejected.index}: {rejected.reason}")
    for ignored in report.ignored:
        console.print(
            f"record {ignored.index}: ignored {ignored.key} = {ignored.value} "
            "(not a usable value; left empty)"
        )
    rejected_count = plural(len(report.rejected), "record")
    ignored_count = plural(len(report.ignored), "value")
    console.print(
        f"{report.registered} movies registered, {report.revised} revised, "
        f"{report.unchanged} unchanged, {rejected_count} rejected, "
        f"{ignored_count} ignored"
    )


@app.command("schedule")
def schedule(
    movie_id: Annotated[str, typer.Option(help="Movie id (UUID) from GET /movies.")],
    auditorium: Annotated[str, typer.Option(help="hall-1, hall-2 or studio-3.")],
    starts_at: Annotated[
        str, typer.Option(help="Start with time zone, e.g. 2026-12-24T19:30:00+00:00.")
    ],
    data_dir: DataDir = Path(".boxoffice"),
) -> None:
    """Schedule one showtime and print its id."""
    configure_logging(None, console_level=logging.WARNING)
    try:
        movie = UUID(movie_id)
    except ValueError as error:
        console.print(f"[red]error:[/red] --movie-id {movie_id!r} is not a UUID")
        raise typer.Exit(2) from error
    try:
        start = datetime.fromisoformat(starts_at)
    except ValueError as error:
        message = f"--starts-at {starts_at!r} is not an ISO 8601 time: {error}"
        console.print(f"[red]error:[/red] {message}")
        raise typer.Exit(2) from error
    try:
        showtime_id = seeding.schedule_one(
            Settings(), data_dir.resolve(), movie, auditorium, start
        )
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    print(showtime_id)


@app.command("schedule-demo")
def schedule_demo(
    data_dir: DataDir = Path(".boxoffice"),
    first_day: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD; default tomorrow.")
    ] = None,
) -> None:
    """Schedule a demo week of showtimes for the most voted films in the store."""
    configure_logging(None, console_level=logging.WARNING)
    settings = Settings()
    zone = ZoneInfo(settings.TIMEZONE)
    day = date.fromisoformat(first_day) if first_day else tomorrow(zone)
    with data_dir_module.event_store_url(settings, data_dir.resolve()) as url:
        count = seeding.schedule_demo(url, day, zone)
    console.print(f"{count} showtimes scheduled from {day}")


@app.command()
def init() -> None:
    """Create the event store tables, the Kafka topics and the MongoDB indexes."""
    configure_logging(None, console_level=logging.INFO)
    stack.initialise(Settings())
    console.print("Tables, topics and indexes are ready.")


@app.command()
def lag(data_dir: DataDir = Path(".boxoffice")) -> None:
    """Print how many records the processor and projector have yet to process."""
    configure_logging(None, console_level=logging.WARNING)
    settings = data_dir_module.running_settings(data_dir.resolve())
    for group, count in asyncio.run(consumer_lag(settings)).items():
        print(f"{group}: {count}")


@app.command("worker", hidden=True)
def worker(
    name: Annotated[str, typer.Argument(help="processor, relay or projector")],
) -> None:
    """Run one worker until SIGINT or SIGTERM."""
    from infra.runtime.workers import WORKERS, run_worker

    if name not in WORKERS:
        console.print(
            f"[red]error:[/red] unknown worker {name!r}; use one of {sorted(WORKERS)}"
        )
        raise typer.Exit(2)
    configure_logging(None, console_level=logging.INFO)
    run_worker(name, Settings())


@app.command("urls", hidden=True)
def urls(data_dir: DataDir = Path(".boxoffice")) -> None:
    """Print the service URLs of the stack running on ``data_dir``."""
    print(json.dumps(data_dir_module.read_urls(data_dir.resolve()), indent=2))


def plural(count: int, noun: str) -> str:
    """Return ``count`` with ``noun``, adding an "s" unless the count is 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def tomorrow(zone: ZoneInfo) -> date:
    """Return tomorrow's date in the cinema's time zone."""
    return datetime.now(zone).date() + timedelta(days=1)


def main() -> None:
    """Entry point for ``python -m infra.runtime.cli``."""
    app()


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
