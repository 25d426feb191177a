"""Process supervision for ``boxoffice up``: start the workers and the API as child
processes, restart one that dies, and stop them all in order.

The children's pids are recorded in a JSON file, so that the next run can stop
children that a killed supervisor left behind.
"""

import ctypes
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.runtime.embedded.leftover import stop_leftover_child

logger = logging.getLogger(__name__)

RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# A process that ran this long was healthy, so its restart delays start afresh.
HEALTHY_RUN_S = 60.0
# Every supervised child's command line contains one of these, and a process
# recorded by an earlier run is stopped only when its command line does too.
CHILD_COMMAND_MARKERS = ("infra.runtime.cli worker", "read_api.app:create_app")
LEFTOVER_STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
# The prctl option from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


@dataclass
class RestartSchedule:
    """Restart bookkeeping of one process: restart count, next restart, last start.

    The times are time.monotonic() values in seconds.
    """

    restarts: int = 0
    # 0.0 while no restart is scheduled.
    restart_at: float = 0.0
    started_at: float = 0.0

    @property
    def scheduled(self) -> bool:
        """Whether a restart is scheduled."""
        return self.restart_at != 0.0

    def schedule(self, now: float) -> float:
        """Schedule a restart after an exit and return its delay in seconds.

        The delay grows with each restart along RESTART_DELAYS_S, and starts afresh
        when the process had run for HEALTHY_RUN_S.
        """
        if now - self.started_at > HEALTHY_RUN_S:
            self.restarts = 0
        delay = RESTART_DELAYS_S[min(self.restarts, len(RESTART_DELAYS_S) - 1)]
        self.restart_at = now + delay
        return delay

    def due(self, now: float) -> bool:
        """Return whether a scheduled restart is due at ``now``."""
        return self.scheduled and now >= self.restart_at

    def record_start(self, now: float, restart: bool) -> None:
        """Record a start, counting it when it is a ``restart``."""
        if restart:
            self.restarts += 1
        self.restart_at = 0.0
        self.started_at = now


@dataclass
class Child:
    """One supervised process, with the command that starts it."""

    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    schedule: RestartSchedule = field(default_factory=RestartSchedule)
    # Where the output of the current run begins in the log, in bytes.
    log_offset: int = 0

    def start(self, env: dict[str, str]) -> None:
        """Start the process in its own session, appending its output to its log.

        Started from the main thread on Linux, the process gets SIGTERM when this
        process dies, even by SIGKILL.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.log_offset = log.tell()
            self.process = subprocess.Popen(
                self.command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=parent_death_signal_setter(),
            )
        logger.info(
            "started %s (pid %s), log %s", self.name, self.process.pid, self.log_path
        )

    def stop(self, timeout: float) -> None:
        """Send SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return

        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s (pid %s) ignored SIGTERM; killing it", self.name, self.process.pid
            )
            self.process.kill()
            self.process.wait(5)
        logger.info("stopped %s (exit code %s)", self.name, self.process.returncode)

    def log_tail(self, count: int = LOG_TAIL_LINES) -> str:
        """Return the last ``count`` lines that the current run wrote to its log."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                text = log.read().decode(errors="replace")
        except OSError as error:
            return f"(cannot read {self.log_path}: {error})"
        lines = text.splitlines()[-count:]
        return "\n".join(lines) if lines else "(empty)"


class Supervisor:
    """Keeps a set of child processes running until stop() is called.

    Call start() and check() from the main thread: only then do the children die
    with this process (see parent_death_signal_setter).
    """

    def __init__(
        self, children: list[Child], env: dict[str, str], pid_path: Path | None = None
    ) -> None:
        self.children = children
        self.env = env
        # JSON object of child name to pid, rewritten on every start.
        self.pid_path = pid_path

    def start(self) -> None:
        """Start every child."""
        for child in self.children:
            self._start(child, restart=False)

    def child(self, name: str) -> Child:
        """Return the child called ``name``, raising KeyError when there is none."""
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def check(self) -> None:
        """Restart, with growing delays, any child that exited."""
        now = time.monotonic()
        for child in self.children:
            if child.process is None or child.process.poll() is None:
                continue
            if not child.schedule.scheduled:
                delay = child.schedule.schedule(now)
                logger.error(
                    "%s exited with code %s; restarting in %.0f s (see %s)",
                    child.name,
                    child.process.returncode,
                    delay,
                    child.log_path,
                )
            elif child.schedule.due(now):
                self._start(child, restart=True)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the children in reverse start order."""
        for child in reversed(self.children):
            child.stop(timeout)
        if self.pid_path is not None:
            self.pid_path.unlink(missing_ok=True)

    def _start(self, child: Child, restart: bool) -> None:
        child.start(self.env)
        child.schedule.record_start(time.monotonic(), restart)
        self._write_pids()

    def _write_pids(self) -> None:
        if self.pid_path is None:
            return
        pids = {
            child.name: child.process.pid
            for child in self.children
            if child.process is not None
        }
        # Replaced in one step, so a reader never sees half a file.
        partial = self.pid_path.with_name(self.pid_path.name + ".partial")
        partial.write_text(json.dumps(pids, indent=2))
        partial.replace(self.pid_path)


def stop_leftover_children(
    pid_path: Path, timeout: float = LEFTOVER_STOP_TIMEOUT_S
) -> None:
    """Stop the children recorded in ``pid_path`` by an earlier, killed supervisor.

    A recorded process is stopped only when its command line contains one of
    CHILD_COMMAND_MARKERS, so a pid reused by an unrelated program is left alone.
    The file is removed afterwards.
    """
    try:
        recorded = json.loads(pid_path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as error:
        logger.warning("Ignoring unreadable pid file %s: %s", pid_path, error)
        pid_path.unlink(missing_ok=True)
        return
    if not isinstance(recorded, dict):
        logger.warning("Ignoring pid file %s: it is not a JSON object", pid_path)
        pid_path.unlink(missing_ok=True)
        return

    # Reverse start order, so the API frees its port first.
    for name, pid in reversed(list(recorded.items())):
        if not isinstance(pid, int):
            logger.warning("Ignoring pid %r of %s in %s", pid, name, pid_path)
            continue
        stop_leftover_child(name, pid, CHILD_COMMAND_MARKERS, timeout)
    pid_path.unlink(missing_ok=True)


def parent_death_signal_setter() -> Callable[[], None] | None:
    """Return a Popen ``preexec_fn`` that sets SIGTERM as the parent-death signal.

    The child then gets SIGTERM when its parent dies, even by SIGKILL. Returns None
    where that is unavailable or unsafe. The signal fires when the *thread* that
    created the child exits, not the whole process (prctl(2), PR_SET_PDEATHSIG).
    A child started from a worker thread would therefore get SIGTERM as soon as
    that thread finishes, so this returns None outside the main thread, whose exit
    ends the process. It also returns None on systems other than Linux, which
    have no prctl.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None

    prctl = _libc_prctl()
    parent_pid = os.getpid()
    signal_number = int(signal.SIGTERM)

    def set_parent_death_signal() -> None:
        # Runs in the forked child before exec. It only calls functions that were
        # looked up in the parent, because the child of a threaded process must
        # not take locks that another thread may have held at fork time.
        prctl(_PR_SET_PDEATHSIG, signal_number)
        # The parent may have died between fork and prctl, and then no signal
        # would ever come.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal_number)

    return set_parent_death_signal


@functools.cache
def _libc_prctl() -> Callable[[int, int], int]:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl  # type: ignore[no-any-return]


def python_command(*args: str) -> list[str]:
    """Return a command that runs this Python with ``args``."""
    return [sys.executable, *args]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Return this process's environment with ``extra`` on top."""
    return {**os.environ, **extra}
