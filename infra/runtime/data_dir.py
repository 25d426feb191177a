"""The data folder of a local stack: its lock, its recorded service URLs and ports.

``boxoffice up`` holds an exclusive lock on ``<data_dir>/boxoffice.lock`` while it
runs, so two stacks never share a data folder. The URLs of a running stack are
written to ``<data_dir>/urls.json``, so that other commands on the same data folder
(``import-movies``, ``schedule``) use its services instead of starting their own.
The file is trusted only while a live process holds the lock: one left by a killed
run is ignored.
"""

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.adapters.event_store import create_tables
from infra.adapters.settings import Settings
from infra.runtime import embedded

logger = logging.getLogger(__name__)

LOCK_FILE = "boxoffice.lock"
URLS_FILE = "urls.json"
# data_dir_in_use() holds a shared lock for a moment, so taking the exclusive lock
# is retried for about half a second before another holder is reported.
LOCK_ATTEMPTS = 5
LOCK_RETRY_INTERVAL_S = 0.1
# How long a command waits for a starting stack to record its service URLs.
RUNNING_URLS_TIMEOUT_S = 120.0


class StackStartError(RuntimeError):
    """A failed start of the local stack, with the reason and the fix in its message."""


class DataDirLockedError(RuntimeError):
    """Another live process holds the lock on a data folder."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        holder = f" (pid {pid})" if pid else ""
        stop_hint = f" (Ctrl-C in its terminal, or kill {pid})" if pid else ""
        super().__init__(
            f"the data folder {data_dir} is in use by another Boxoffice process"
            f"{holder}. Stop that process{stop_hint}, or pass another --data-dir."
        )


@contextmanager
def event_store_url(settings: Settings, data_dir: Path) -> Iterator[str]:
    """Yield the event store URL: configured, that of a running stack, or embedded.

    An embedded PostgreSQL runs only while this process holds the data folder's
    lock, so that a ``boxoffice up`` started meanwhile does not stop it as a
    leftover.
    """
    if settings.POSTGRES_URL:
        create_tables(settings.POSTGRES_URL)
        yield settings.POSTGRES_URL
        return

    lock_or_url = lock_or_running_url(data_dir, "BOXOFFICE_POSTGRES_URL")
    if isinstance(lock_or_url, str):
        yield lock_or_url
        return

    try:
        service = embedded.start_postgres(data_dir)
        try:
            create_tables(service.url)
            yield service.url
        finally:
            service.stop()
    finally:
        lock_or_url.release()


class DataDirLock:
    """An exclusive flock on ``<data_dir>/boxoffice.lock``, which records the pid.

    The kernel releases the lock when the holder exits in any way, SIGKILL
    included, so a held lock means a live holder. Child processes do not inherit
    it, because Python opens file descriptors as non-inheritable and subprocess
    closes the others by default.
    """

    def __init__(self, data_dir: Path, descriptor: int) -> None:
        self.data_dir = data_dir
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        """Release the lock. A second call does nothing."""
        if self._descriptor is None:
            return
        fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        os.close(self._descriptor)
        self._descriptor = None


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Take the exclusive lock on ``data_dir`` without blocking, and record the pid.

    Raises DataDirLockedError, with the holder's pid, when another process holds
    the lock.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    # Opened without truncation, because the holder's pid must stay readable.
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == LOCK_ATTEMPTS:
                os.close(descriptor)
                raise DataDirLockedError(data_dir, lock_holder_pid(path)) from None
            time.sleep(LOCK_RETRY_INTERVAL_S)
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(data_dir, descriptor)


def lock_holder_pid(path: Path) -> int | None:
    """Return the pid recorded in the lock file, or None when there is none."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def data_dir_in_use(data_dir: Path) -> bool:
    """Return whether a live process, this one included, holds the data folder lock."""
    try:
        descriptor = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        # A second open file description conflicts with every other one, even
        # one of this process, so the holder's own check also finds it locked.
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def lock_or_running_url(
    data_dir: Path, variable: str, timeout: float = RUNNING_URLS_TIMEOUT_S
) -> DataDirLock | str:
    """Return the data folder's lock, or the URL ``variable`` of the stack using it.

    A stack that is still starting records its URLs a little after it takes the
    lock, so this waits up to ``timeout`` seconds for them, and re-raises
    DataDirLockedError after that.
    """
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            return lock_data_dir(data_dir)
        except DataDirLockedError as locked:
            url = read_urls(data_dir).get(variable)
            if url:
                return url
            if time.monotonic() >= deadline:
                raise
            if not waiting:
                waiting = True
                logger.info(
                    "Waiting up to %.0f s for the process (pid %s) on %s to record "
                    "its service URLs",
                    timeout,
                    locked.pid,
                    data_dir,
                )
        time.sleep(0.5)


def check_port_free(host: str, port: int) -> None:
    """Raise StackStartError naming ``port`` when a program already listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # uvicorn sets this too, so a port in TIME_WAIT after an earlier run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise StackStartError(
                f"cannot start the API on {host}:{port}: {error.strerror}"
                f"{port_holder(port)}. Stop the program that uses port {port}, "
                "or pass another --port."
            ) from error


def port_holder(port: int) -> str:
    """Return " (pid N: command)" for the process listening on ``port``, or "".

    Finding it needs psutil and, for other users' processes, root.
    """
    try:
        import psutil
    except ImportError:
        return ""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return ""
    for connection in connections:
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr.port == port
            and connection.pid is not None
        ):
            try:
                command = " ".join(psutil.Process(connection.pid).cmdline())
            except psutil.Error:
                command = "command unknown"
            return f" (pid {connection.pid}: {command})"
    return ""


def running_settings(data_dir: Path) -> Settings:
    """Return settings with the URLs of the stack running on ``data_dir`` filled in."""
    os.environ.update(
        {k: v for k, v in read_urls(data_dir).items() if k not in os.environ}
    )
    return Settings()


def write_urls(data_dir: Path, env: dict[str, str]) -> None:
    """Record the running stack's service URLs in the data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / URLS_FILE).write_text(json.dumps(env, indent=2))


def read_urls(data_dir: Path) -> dict[str, str]:
    """Return the service URLs of a stack running on ``data_dir``, or an empty dict.

    The recorded URLs are ignored when no live process holds the data folder's
    lock, because then they are left from a run that was killed.
    """
    path = data_dir / URLS_FILE
    if not path.exists():
        return {}
    if not data_dir_in_use(data_dir):
        logger.info("ignored stale %s: no live process has locked %s", path, LOCK_FILE)
        return {}
    return dict(json.loads(path.read_text()))
