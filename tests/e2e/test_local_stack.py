"""``boxoffice up`` as a user runs it, on embedded servers under a tmp folder: a
second start on the same folder, a killed Kafka and a killed supervisor.

The tests of this module share one stack and run in file order. Every process
that the stack starts, leftovers included, is killed at the end, found by a marker
variable in its environment or the data folder in its command line or cwd.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from infra.runtime.data_dir import read_urls
from infra.runtime.supervisor import CHILD_COMMAND_MARKERS, stop_leftover_children

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RUNNING_LINE = "Boxoffice is running"
# The first start imports the sample catalogue and schedules the demo week.
START_TIMEOUT_S = 120.0
KAFKA_RECOVERY_S = 60.0
CHILD_EXIT_TIMEOUT_S = 10.0
# Ports reserved for these tests' API.
API_PORTS = range(8500, 8600)
# Inherited by every process the stack starts, so the finalizer finds them all.
MARKER_VARIABLE = "LOCAL_STACK_TEST_DATA_DIR"
SERVERS = ("postgres", "kafka", "mongodb", "redis")


@dataclass
class LocalStackRun:
    """One data folder, its API port and the `up` process that runs on it."""

    data_dir: Path
    port: int
    env: dict[str, str]
    up: subprocess.Popen[bytes] | None = None
    output_path: Path | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "infra.runtime.cli", "up",
            "--data-dir", str(self.data_dir), "--port", str(self.port),
        ]  # fmt: skip

    def start(self, name: str) -> None:
        """Start `up` with its output in ``<name>.out`` next to the data folder."""
        self.output_path = self.data_dir.parent / f"{name}.out"
        with self.output_path.open("wb") as output:
            self.up = subprocess.Popen(
                self.command(),
                cwd=REPO,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        assert self.output_path is not None
        return self.output_path.read_text(errors="replace")

    def wait_until_running(self) -> None:
        """Wait for the welcome line; fail with the output when `up` exits first."""
        assert self.up is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while RUNNING_LINE not in self.output():
            if self.up.poll() is not None:
                pytest.fail(
                    f"up exited with code {self.up.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"up printed no {RUNNING_LINE!r} within {START_TIMEOUT_S} s:\n"
                    f"{self.output()}"
                )
            time.sleep(0.5)

    def child_pids(self) -> dict[str, int]:
        """Return the supervised children's pids that `up` recorded."""
        return dict(json.loads((self.data_dir / "children.json").read_text()))

    def server_pid(self, name: str) -> int:
        """Return the pid of an embedded server from its pid file."""
        if name == "postgres":
            pid_file = self.data_dir / "postgres" / "postmaster.pid"
        else:
            pid_file = self.data_dir / f"{name}.pid"
        return int(pid_file.read_text().split()[0])

    def log(self) -> str:
        return (self.data_dir / "logs" / "boxoffice.log").read_text(errors="replace")


def free_api_port() -> int:
    """Return a port of API_PORTS that nothing listens on now."""
    # In random order, so that parallel runs seldom pick the same port.
    for port in random.sample(API_PORTS, len(API_PORTS)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port in {API_PORTS}")


def stack_processes(data_dir: Path) -> list[psutil.Process]:
    """Return the processes of the stack on ``data_dir``, leftovers included."""
    folder = str(data_dir)
    found = []
    for process in psutil.process_iter(["cmdline", "environ", "cwd"]):
        if process.pid == os.getpid():
            continue
        info = process.info
        environ = info["environ"] or {}
        command_line = info["cmdline"] or []
        cwd = Path(info["cwd"] or "/")
        if (
            environ.get(MARKER_VARIABLE) == folder
            or any(folder in argument for argument in command_line)
            or cwd.is_relative_to(data_dir)
        ):
            found.append(process)
    return found


def kill_stack(data_dir: Path) -> None:
    """Kill every process of the stack on ``data_dir``, with its process group."""
    for process in stack_processes(data_dir):
        try:
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass


def is_alive(pid: int) -> bool:
    """Return whether ``pid`` runs and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def health_status(api: str) -> int:
    return httpx.get(f"{api}/health", timeout=5).status_code


def free_seats(api: str, showtime_id: str) -> list[str]:
    """Return the free standard seats of a showtime."""
    seat_map = httpx.get(f"{api}/showtimes/{showtime_id}/seats", timeout=10).json()
    return [
        position["seat"]
        for row in seat_map["rows"]
        for position in row["positions"]
        if position["kind"] == "standard" and position["state"] == "free"
    ]


def first_showtime(api: str) -> str:
    response = httpx.get(f"{api}/showtimes", timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()[0]["id"])


def book(api: str, showtime_id: str, seat: str) -> httpx.Response:
    """Book one seat with a fresh Idempotency-Key, waiting up to 10 s."""
    body = {"showtimeId": showtime_id, "seats": [seat], "paymentMethod": "card"}
    headers = {"Idempotency-Key": f"lifecycle-{uuid.uuid4()}"}
    return httpx.post(
        f"{api}/book-tickets?wait=10000", json=body, headers=headers, timeout=30
    )


def book_until_created(api: str, showtime_id: str, timeout: float) -> httpx.Response:
    """Book one seat at a time until a booking gets 201 or ``timeout`` s pass.

    Returns the last response. Each attempt takes a fresh seat, because an attempt
    that got 503 may still be decided later and take its seat.
    """
    seats = iter(free_seats(api, showtime_id))
    deadline = time.monotonic() + timeout
    statuses = []
    while True:
        response = book(api, showtime_id, next(seats))
        statuses.append(response.status_code)
        if response.status_code == 201 or time.monotonic() >= deadline:
            break
        time.sleep(1)
    if len(statuses) > 1:
        print(f"booking statuses until 201: {statuses}")
    return response


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackRun]:
    """Run `up` with every server embedded; kill all its processes at the end."""
    data_dir = tmp_path_factory.mktemp("local-stack") / "data"
    # Without service URLs, `up` embeds all four servers and never touches the
    # machine's PostgreSQL or Redis.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    env[MARKER_VARIABLE] = str(data_dir)
    run = LocalStackRun(data_dir, free_api_port(), env)
    try:
        run.start("first")
        run.wait_until_running()
        yield run
    finally:
        if run.up is not None and run.up.poll() is None:
            run.up.send_signal(signal.SIGTERM)
            try:
                run.up.wait(60)
            except subprocess.TimeoutExpired:
                run.up.kill()
        kill_stack(data_dir)


def test_second_up_exits_naming_holder(local_stack: LocalStackRun) -> None:
    assert local_stack.up is not None
    children = local_stack.child_pids()
    started = time.monotonic()

    second = subprocess.run(
        local_stack.command(),
        cwd=REPO,
        env=local_stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert second.returncode == 1, second.stderr
    assert time.monotonic() - started < 30
    assert str(local_stack.data_dir) in second.stderr
    assert f"pid {local_stack.up.pid}" in second.stderr
    assert "--data-dir" in second.stderr
    assert "left running by an earlier run" not in second.stderr
    assert health_status(local_stack.api) == 200
    # The first stack still holds the lock, so its recorded URLs are trusted.
    assert set(read_urls(local_stack.data_dir)) == {
        "BOXOFFICE_POSTGRES_URL",
        "BOXOFFICE_REDIS_URL",
        "BOXOFFICE_KAFKA_BOOTSTRAP_SERVERS",
        "BOXOFFICE_MONGODB_URL",
    }
    assert local_stack.child_pids() == children
    for name, pid in children.items():
        assert is_alive(pid), name
    for name in SERVERS:
        assert is_alive(local_stack.server_pid(name)), name


def test_booking_works_after_kafka_killed(local_stack: LocalStackRun) -> None:
    api = local_stack.api
    showtime_id = first_showtime(api)
    killed_pid = local_stack.server_pid("kafka")

    os.kill(killed_pid, signal.SIGKILL)
    response = book_until_created(api, showtime_id, KAFKA_RECOVERY_S)

    assert response.status_code == 201, response.text
    assert local_stack.server_pid("kafka") != killed_pid
    log = local_stack.log()
    assert f"Embedded kafka (pid {killed_pid}) exited with code -9" in log
    assert "Restarted embedded kafka" in log


def test_up_restarts_after_kill_keeping_booking(local_stack: LocalStackRun) -> None:
    assert local_stack.up is not None
    api = local_stack.api
    showtime_id = first_showtime(api)
    # The stack may still be recovering from the Kafka restart of the last test.
    booked = book_until_created(api, showtime_id, KAFKA_RECOVERY_S)
    assert booked.status_code == 201, booked.text
    booking_id = booked.json()["bookingId"]
    children = local_stack.child_pids()
    servers = {name: local_stack.server_pid(name) for name in SERVERS}

    local_stack.up.kill()
    local_stack.up.wait(10)
    deadline = time.monotonic() + CHILD_EXIT_TIMEOUT_S
    while time.monotonic() < deadline and any(map(is_alive, children.values())):
        time.sleep(0.2)

    for name, pid in children.items():
        assert not is_alive(pid), f"{name} (pid {pid}) outlived the killed up"
    for name, pid in servers.items():
        assert is_alive(pid), f"embedded {name} (pid {pid}) should outlive up"
    # urls.json is left behind, but no live process holds the lock.
    assert (local_stack.data_dir / "urls.json").exists()
    assert read_urls(local_stack.data_dir) == {}

    local_stack.start("restarted")
    local_stack.wait_until_running()

    for name, pid in servers.items():
        assert not is_alive(pid), f"leftover {name} (pid {pid}) was not stopped"
    ticket = httpx.get(f"{api}/tickets/{booking_id}", timeout=10)
    assert ticket.status_code == 200, ticket.text
    assert ticket.json()["status"] == "confirmed"
    assert health_status(api) == 200


def test_leftover_children_stop_when_recorded(tmp_path: Path) -> None:
    # Both sleep; only the first has a supervised child's command line.
    sleep = "import time; time.sleep(60)"
    worker = subprocess.Popen(
        [sys.executable, "-c", sleep, *CHILD_COMMAND_MARKERS[0].split(), "relay"]
    )
    stranger = subprocess.Popen([sys.executable, "-c", sleep, "unrelated"])
    pid_path = tmp_path / "children.json"
    pid_path.write_text(json.dumps({"relay": worker.pid, "api": stranger.pid}))
    try:
        stop_leftover_children(pid_path, timeout=5)

        assert worker.wait(5) == -signal.SIGTERM
        assert stranger.poll() is None
        assert not pid_path.exists()
    finally:
        for process in (worker, stranger):
            process.kill()
            process.wait()
