"""Start an embedded server for each server URL that the settings leave unset."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from infra.adapters.settings import Settings
from infra.runtime.embedded.kafka import start_kafka
from infra.runtime.embedded.mongodb import start_mongodb
from infra.runtime.embedded.postgres import start_postgres
from infra.runtime.embedded.process import (
    DEFAULT_START_TIMEOUT_S,
    EmbeddedService,
    _kill_process_group,
)
from infra.runtime.embedded.redis import start_redis

logger = logging.getLogger(__name__)

# Settings fields in start order. Callers stop the services in reverse order.
_STARTERS: tuple[tuple[str, Callable[[Path, float], EmbeddedService]], ...] = (
    ("POSTGRES_URL", start_postgres),
    ("REDIS_URL", start_redis),
    ("KAFKA_BOOTSTRAP_SERVERS", start_kafka),
    ("MONGODB_URL", start_mongodb),
)

# The start functions by service name, each taking (data_dir, timeout, port).
_STARTERS_BY_NAME: dict[str, Callable[[Path, float, int | None], EmbeddedService]] = {
    "postgres": start_postgres,
    "redis": start_redis,
    "kafka": start_kafka,
    "mongodb": start_mongodb,
}


def start_missing(
    settings: Settings, data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S
) -> tuple[dict[str, str], list[EmbeddedService]]:
    """Start an embedded server for each of the four server URLs unset in settings.

    Returns the environment for child processes, with all four ``BOXOFFICE_*`` URL
    variables set to the configured or embedded URL, and the started services in
    the order PostgreSQL, Redis, Kafka, MongoDB, which callers stop in reverse. The
    servers start in parallel threads. When one fails, the others are stopped and
    the first error is raised.
    """
    missing = [
        (field, start) for field, start in _STARTERS if not getattr(settings, field)
    ]
    started = _start_concurrently(missing, data_dir, timeout) if missing else {}

    environment: dict[str, str] = {}
    for field, _ in _STARTERS:
        configured = getattr(settings, field)
        environment[f"BOXOFFICE_{field}"] = configured or started[field].url
    services = [started[field] for field, _ in _STARTERS if field in started]
    return environment, services


def _start_concurrently(
    starters: list[tuple[str, Callable[[Path, float], EmbeddedService]]],
    data_dir: Path,
    timeout: float,
) -> dict[str, EmbeddedService]:
    """Run the start functions in threads and return the services by settings field."""
    executor = ThreadPoolExecutor(
        max_workers=len(starters), thread_name_prefix="embedded-start"
    )
    futures: dict[str, Future[EmbeddedService]] = {}
    started: dict[str, EmbeddedService] = {}
    errors: list[Exception] = []
    try:
        for field, start in starters:
            futures[field] = executor.submit(start, data_dir, timeout)
        executor.shutdown(wait=False)

        for field, future in futures.items():
            try:
                started[field] = future.result()
            except Exception as exc:
                logger.error(
                    "Starting the embedded server for %s failed: %s", field, exc
                )
                errors.append(exc)
    except BaseException:
        # A KeyboardInterrupt stops only this thread. The worker threads go on
        # starting servers in their own sessions, which would outlive this process.
        logger.warning("Start interrupted, so stopping the servers started so far")
        _stop_in_reverse(_collect_started(futures))
        raise
    if errors:
        _stop_in_reverse(list(started.values()))
        raise errors[0]
    return started


def _collect_started(
    futures: dict[str, Future[EmbeddedService]],
) -> list[EmbeddedService]:
    services = []
    for field, future in futures.items():
        try:
            services.append(future.result())
        except Exception as exc:
            logger.error("Starting the embedded server for %s failed: %s", field, exc)
    return services


def _stop_in_reverse(services: list[EmbeddedService]) -> None:
    for service in reversed(services):
        service.stop()


def restart_service(
    service: EmbeddedService, data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S
) -> EmbeddedService:
    """Start a new server in place of ``service``, which has exited.

    The new server uses the same data folder and port, so clients configured with
    the old URL reach it. Processes left in the old server's process group (the
    backends of a killed PostgreSQL, for example) are killed first, because they
    would keep the data folder in use. Raises EmbeddedServiceError when the start
    fails, for example because another process took the port.
    """
    if service.is_running():
        raise ValueError(
            f"embedded {service.name} (pid {service.process.pid}) is still running"
        )
    if service.port is None:
        raise ValueError(f"embedded {service.name} has no recorded port")
    # The old pid is the process group id because each server leads its own session.
    _kill_process_group(service.process.pid)
    start = _STARTERS_BY_NAME[service.name]
    return start(data_dir, timeout, service.port)
