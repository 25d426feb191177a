"""Start a server child process on a port and wait until it accepts clients."""

from __future__ import annotations

import logging
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from infra.runtime.embedded.process import (
    HOST,
    EmbeddedService,
    EmbeddedServiceError,
    _credentials,
    _NotReadyError,
    _PortInUseError,
    free_port,
)

logger = logging.getLogger(__name__)

_PORT_ATTEMPTS = 3
_PROBE_INTERVAL_S = 0.1
_PROBE_TIMEOUT_S = 2.0
_LOG_TAIL_LINES = 20
# Redis, PostgreSQL and SecantusDB write "Address already in use". Tansu 0.6 writes
# "Address in use" from a panic and then exits with code 0.
_PORT_IN_USE = re.compile(r"address (already )?in use", re.IGNORECASE)


@dataclass(frozen=True)
class _ServerSpec:
    """How to run one kind of server and how to tell that it accepts clients."""

    name: str
    title: str
    build_command: Callable[[int], list[str]]
    build_url: Callable[[int], str]
    # Makes one readiness check against the port within the timeout in seconds,
    # raising _NotReadyError when the server does not accept clients yet.
    probe: Callable[[int, float], None]
    cwd: Path
    stop_signal: signal.Signals = signal.SIGTERM
    user: str | None = None
    env: dict[str, str] | None = None
    # Pid file this module writes. None for PostgreSQL, which writes its own.
    pid_file: Path | None = None


def _start_server(
    spec: _ServerSpec, data_dir: Path, timeout: float, port: int | None = None
) -> EmbeddedService:
    """Start a server and wait until it accepts clients.

    The server listens on ``port``, or on a free port when ``port`` is None. Only
    a free port is retried, with a new one, when another process took it first.
    Stops the server and raises EmbeddedServiceError when it exits, when the given
    ``port`` is in use, or when it is not ready within ``timeout`` seconds,
    counted over all attempts.
    """
    deadline = time.monotonic() + timeout
    log_path = data_dir / "logs" / f"{spec.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        chosen_port = port if port is not None else free_port()
        command = spec.build_command(chosen_port)
        logger.info(
            "Starting embedded %s on %s:%d: %s",
            spec.title,
            HOST,
            chosen_port,
            shlex.join(command),
        )
        started = time.monotonic()
        service, log_offset = _spawn(spec, command, chosen_port, log_path)
        try:
            _wait_until_ready(
                spec, service, chosen_port, command, log_offset, deadline, timeout
            )
        except _PortInUseError:
            service.stop()
            if port is not None:
                message = (
                    f"{spec.title} could not bind port {port} because another "
                    "process holds it"
                )
                raise EmbeddedServiceError(
                    _describe_failure(message, command, log_path, log_offset)
                ) from None
            if attempt == _PORT_ATTEMPTS:
                message = (
                    f"{spec.title} could not bind a free port in {_PORT_ATTEMPTS} "
                    "attempts because another process took each one first"
                )
                raise EmbeddedServiceError(
                    _describe_failure(message, command, log_path, log_offset)
                ) from None
            logger.warning(
                "Embedded %s could not bind port %d because another process took "
                "it; retrying with a new port (attempt %d of %d)",
                spec.title,
                chosen_port,
                attempt + 1,
                _PORT_ATTEMPTS,
            )
            continue
        except BaseException:
            service.stop()
            raise
        logger.info(
            "Embedded %s is ready at %s after %.2f s (pid %d, log %s)",
            spec.title,
            service.url,
            time.monotonic() - started,
            service.process.pid,
            log_path,
        )
        return service
    raise AssertionError("unreachable: the last attempt returns or raises")


def _spawn(
    spec: _ServerSpec, command: list[str], port: int, log_path: Path
) -> tuple[EmbeddedService, int]:
    """Start the server process and return it with the offset where its log begins.

    The pid file gets the pid on its first line and the port on its second, so
    that a later start can recognise the server even when it rewrites its
    command line, as Redis does.
    """
    with log_path.open("ab") as log_file:
        log_offset = mark_log(log_file, "starting", command)
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=spec.cwd,
                env=spec.env,
                start_new_session=True,
                **_credentials(spec.user),
            )
        except OSError as exc:
            message = f"{spec.title} failed to start: {exc}"
            raise EmbeddedServiceError(
                _describe_failure(message, command, log_path, log_offset)
            ) from exc
    if spec.pid_file is not None:
        spec.pid_file.write_text(f"{process.pid}\n{port}\n")
    service = EmbeddedService(
        spec.name,
        spec.build_url(port),
        process,
        log_path,
        stop_signal=spec.stop_signal,
        pid_file=spec.pid_file,
        port=port,
    )
    return service, log_offset


def _wait_until_ready(
    spec: _ServerSpec,
    service: EmbeddedService,
    port: int,
    command: list[str],
    log_offset: int,
    deadline: float,
    timeout: float,
) -> None:
    """Probe the server until it accepts clients, it exits or the deadline passes.

    ``timeout`` is the whole start timeout in seconds, for the error message.
    """
    last_error = "no check ran"
    while True:
        exit_code = service.process.poll()
        if exit_code is not None:
            output = _read_log(service.log_path, log_offset)
            if _PORT_IN_USE.search(output):
                raise _PortInUseError
            message = f"{spec.title} exited with code {exit_code} before it was ready"
            raise EmbeddedServiceError(
                _describe_failure(message, command, service.log_path, log_offset)
            )

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            message = (
                f"{spec.title} was not ready within {timeout:.1f} s "
                f"(last check: {last_error})"
            )
            raise EmbeddedServiceError(
                _describe_failure(message, command, service.log_path, log_offset)
            )

        try:
            # A plain TCP connect first keeps the client libraries from logging
            # a connection error for each attempt before the server listens.
            _connect_tcp(port, min(remaining, _PROBE_TIMEOUT_S))
            spec.probe(port, min(remaining, _PROBE_TIMEOUT_S))
        except _NotReadyError as exc:
            last_error = str(exc)
            logger.debug("Embedded %s is not ready yet: %s", spec.title, exc)
            time.sleep(_PROBE_INTERVAL_S)
            continue

        # The probe reaches whatever listens on the port, so it proves nothing
        # if this server has exited, for example because another process bound
        # the port in between.
        if service.process.poll() is None:
            return


def _connect_tcp(port: int, timeout: float) -> None:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            pass
    except OSError as exc:
        raise _NotReadyError(f"TCP connect to {HOST}:{port} failed: {exc}") from exc


def _read_log(log_path: Path, offset: int) -> str:
    """Return the log text written since ``offset``, or "" when it is unreadable."""
    try:
        with log_path.open("rb") as log_file:
            log_file.seek(offset)
            return log_file.read().decode(errors="replace")
    except OSError as exc:
        logger.warning("Could not read log %s: %s", log_path, exc)
        return ""


def _describe_failure(
    message: str, command: Sequence[str], log_path: Path, log_offset: int
) -> str:
    """Return ``message`` with the command and the last lines of this run's log."""
    lines = _read_log(log_path, log_offset).splitlines()[-_LOG_TAIL_LINES:]
    tail = "\n".join(lines) if lines else "(empty)"
    return (
        f"{message}.\nCommand: {shlex.join(command)}\n"
        f"Last {len(lines)} lines of {log_path}:\n{tail}"
    )


def _prepare_data_dir(data_dir: Path) -> Path:
    """Create the data folder and return its absolute path.

    Absolute paths keep the server command lines comparable across runs, which
    the search for a leftover server relies on.
    """
    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    return data_dir


def mark_log(log_file: BinaryIO, action: str, command: Sequence[str]) -> int:
    """Write a timestamped header line for ``command``; return its offset in the log.

    Error messages quote the log from that offset, so they show this run only.
    """
    offset = log_file.tell()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    log_file.write(f"--- {stamp} {action}: {shlex.join(command)}\n".encode())
    log_file.flush()
    return offset
