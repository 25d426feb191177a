"""Process supervision for ``boxoffice up``: start the workers and the API as child
processes, restart one that dies, and stop them all in order.
"""

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class Child:
    """One supervised process, with the command that starts it."""

    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    restart_at: float = 0.0
    started_at: float = field(default=0.0)

    def start(self, env: dict[str, str]) -> None:
        """Start the process in its own session, appending its output to its log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
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


class Supervisor:
    """Keeps a set of child processes running until told to stop."""

    def __init__(self, children: list[Child], env: dict[str, str]) -> None:
        self.children = children
        self.env = env

    def start(self) -> None:
        """Start every child."""
        for child in self.children:
            child.start(self.env)

    def check(self) -> None:
        """Restart, with growing delays, any child that exited."""
        now = time.monotonic()
        for child in self.children:
            if child.process is None or child.process.poll() is None:
                continue
            if child.restart_at == 0.0:
                # A child that ran for a minute was healthy: start its delays afresh.
                if now - child.started_at > 60:
                    child.restarts = 0
                delay = RESTART_DELAYS_S[min(child.restarts, len(RESTART_DELAYS_S) - 1)]
                child.restart_at = now + delay
                logger.error(
                    "%s exited with code %s; restarting in %.0f s (see %s)",
                    child.name,
                    child.process.returncode,
                    delay,
                    child.log_path,
                )
            elif now >= child.restart_at:
                child.restarts += 1
                child.restart_at = 0.0
                child.start(self.env)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the children in reverse start order."""
        for child in reversed(self.children):
            child.stop(timeout)


def python_command(*args: str) -> list[str]:
    """Return a command that runs this Python with ``args``."""
    return [sys.executable, *args]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Return this process's environment with ``extra`` on top."""
    return {**os.environ, **extra}
