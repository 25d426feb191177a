"""The servers and Boxoffice processes that a benchmark run starts, and the cleanup.

PostgreSQL and Redis are the machine's servers at 127.0.0.1:5432 (database
``test``, trust authentication) and 127.0.0.1:6379 when they accept connections,
as in the test suite, and embedded ones otherwise. Kafka (Tansu) and MongoDB
(SecantusDB) are always embedded. Every stack gets a database, a namespace for
topics and Redis keys, and a MongoDB database of its own, which the workspace
deletes when it closes.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg
import redis
from psycopg import sql
from pymongo.errors import PyMongoError

from infra.adapters import mongo
from infra.adapters.settings import Settings
from infra.runtime import embedded

logger = logging.getLogger(__name__)

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
WORKERS = ("processor", "relay", "projector")
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.1


class BenchmarkSetupError(RuntimeError):
    """A server or process that a benchmark needs did not start or become ready."""


def accepts_connections(host: str, port: int) -> bool:
    """Return whether a TCP server accepts connections at ``host``:``port``."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Servers:
    """The URLs of the four servers, where each came from, and the embedded ones."""

    postgres_url: str
    redis_url: str
    kafka_servers: str
    mongodb_url: str
    # Server name ("postgres", "redis", "kafka", "mongodb") to "machine" or "embedded".
    sources: dict[str, str]
    started: list[embedded.EmbeddedService] = field(default_factory=list)

    def stop(self) -> None:
        """Stop the embedded servers in reverse start order."""
        for service in reversed(self.started):
            service.stop()
        self.started.clear()


def start_servers(data_dir: Path) -> Servers:
    """Return the four servers, starting embedded ones where needed.

    PostgreSQL and Redis are the machine's when they accept connections on their
    standard ports. A failed start stops the servers started before it.
    """
    started: list[embedded.EmbeddedService] = []
    sources: dict[str, str] = {}
    urls: dict[str, str] = {}
    machine = {
        "postgres": (5432, LOCAL_POSTGRES_URL, embedded.start_postgres),
        "redis": (6379, LOCAL_REDIS_URL, embedded.start_redis),
    }
    always_embedded = {
        "kafka": embedded.start_kafka,
        "mongodb": embedded.start_mongodb,
    }
    try:
        for name, (port, url, start) in machine.items():
            if accepts_connections("127.0.0.1", port):
                urls[name] = url
                sources[name] = "machine"
                continue
            service = start(data_dir)
            started.append(service)
            urls[name] = service.url
            sources[name] = "embedded"
        for name, start in always_embedded.items():
            service = start(data_dir)
            started.append(service)
            urls[name] = service.url
            sources[name] = "embedded"
    except BaseException:
        for service in reversed(started):
            service.stop()
        raise
    return Servers(
        postgres_url=urls["postgres"],
        redis_url=urls["redis"],
        kafka_servers=urls["kafka"],
        mongodb_url=urls["mongodb"],
        sources=sources,
        started=started,
    )


def database_url(base_url: str, name: str) -> str:
    """Return ``base_url`` with its database name replaced by ``name``."""
    return base_url.rsplit("/", 1)[0] + "/" + name


class Workspace:
    """Fresh databases and namespaces on shared servers, all deleted by ``close``."""

    def __init__(self, servers: Servers, log_dir: Path) -> None:
        self.servers = servers
        self.log_dir = log_dir
        self.databases: list[str] = []
        self.namespaces: list[str] = []
        self.stacks: list[Stack] = []

    def new_database(self) -> str:
        """Create an empty PostgreSQL database and return its URL."""
        name = f"bo_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.servers.postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        return database_url(self.servers.postgres_url, name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``new_database``, ending its open sessions."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.servers.postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )
        if name in self.databases:
            self.databases.remove(name)

    def new_settings(self) -> Settings:
        """Return settings with a new database, namespace and MongoDB database."""
        namespace = f"bench-{uuid.uuid4().hex[:10]}"
        self.namespaces.append(namespace)
        return Settings(
            POSTGRES_URL=self.new_database(),
            REDIS_URL=self.servers.redis_url,
            KAFKA_BOOTSTRAP_SERVERS=self.servers.kafka_servers,
            MONGODB_URL=self.servers.mongodb_url,
            MONGODB_DATABASE=namespace,
            NAMESPACE=namespace,
        )

    def new_stack(self, settings: Settings, label: str) -> "Stack":
        """Return a stack of processes on ``settings``, stopped by ``close``."""
        stack = Stack(settings, self.log_dir, label)
        self.stacks.append(stack)
        return stack

    def close(self) -> None:
        """Stop every stack, then delete the databases, Redis keys and MongoDB data.

        Each cleanup step that fails is logged and the others still run.
        """
        for stack in self.stacks:
            stack.stop_all()
        for name in list(self.databases):
            try:
                self.drop_database(database_url(self.servers.postgres_url, name))
            except psycopg.Error as error:
                logger.error("Dropping database %s failed: %s", name, error)
        for namespace in self.namespaces:
            self.delete_namespace(namespace)

    def delete_namespace(self, namespace: str) -> None:
        """Delete the Redis keys and the MongoDB database of one namespace."""
        prefix = Settings(NAMESPACE=namespace).redis_prefix
        client = redis.Redis.from_url(self.servers.redis_url, socket_timeout=10)
        try:
            deleted = 0
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    deleted += client.delete(*batch)
                    batch.clear()
            if batch:
                deleted += client.delete(*batch)
            logger.info("Deleted %d Redis keys under %s", deleted, prefix)
        except redis.RedisError as error:
            logger.error("Deleting Redis keys under %s failed: %s", prefix, error)
        finally:
            client.close()

        settings = Settings(
            MONGODB_URL=self.servers.mongodb_url, MONGODB_DATABASE=namespace
        )
        db = mongo.database(settings)
        try:
            db.client.drop_database(namespace)
        except PyMongoError as error:
            logger.error("Dropping MongoDB database %s failed: %s", namespace, error)
        finally:
            db.client.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """Return this process's environment plus ``settings`` as BOXOFFICE_* variables."""
    values = settings.model_dump(exclude_none=True)
    return {
        **os.environ,
        **{f"BOXOFFICE_{name}": str(value) for name, value in values.items()},
    }


class Stack:
    """Boxoffice processes (workers and the API) started as children on one settings."""

    def __init__(self, settings: Settings, log_dir: Path, label: str) -> None:
        self.settings = settings
        self.env = settings_env(settings)
        self.log_dir = log_dir
        self.label = label
        self.api = ""
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        """Return the file that process ``name`` writes its output to."""
        return self.log_dir / f"{self.label}-{name}.log"

    def start(self, name: str) -> None:
        """Start a worker (processor, relay, projector) or the API (``api``)."""
        if name == "api":
            port = embedded.free_port()
            self.api = f"http://127.0.0.1:{port}"
            command = [
                sys.executable, "-m", "uvicorn", "read_api.app:create_app",
                "--factory", "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log",
            ]  # fmt: skip
        elif name in WORKERS:
            command = [sys.executable, "-m", "infra.runtime.cli", "worker", name]
        else:
            raise ValueError(f"unknown process {name!r}; use api or one of {WORKERS}")
        with self.log_path(name).open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        logger.info(
            "Started %s %s (pid %d)", self.label, name, self.processes[name].pid
        )

    def stop(self, name: str) -> None:
        """Stop one process with SIGTERM, and SIGKILL it after STOP_TIMEOUT_S."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s %s (pid %d) did not stop within %.0f s; killing it",
                self.label,
                name,
                process.pid,
                STOP_TIMEOUT_S,
            )
            process.kill()
            process.wait(5)

    def stop_all(self) -> None:
        """Stop every process, the API first."""
        for name in sorted(self.processes, key=lambda n: n != "api"):
            self.stop(name)

    def check_running(self) -> None:
        """Raise BenchmarkSetupError naming any process that has exited."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise BenchmarkSetupError(
                    f"{self.label} {name} exited with code {code}; "
                    f"see {self.log_path(name)}"
                )

    def wait_for_api(self, timeout_s: float) -> None:
        """Wait until GET /health returns 200; raise BenchmarkSetupError on timeout."""
        deadline = time.monotonic() + timeout_s
        last_error = "no response yet"
        while time.monotonic() < deadline:
            self.check_running()
            try:
                response = httpx.get(f"{self.api}/health", timeout=1.0)
                if response.status_code == 200:
                    return
                last_error = f"status {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as error:
                last_error = repr(error)
            time.sleep(POLL_INTERVAL_S)
        raise BenchmarkSetupError(
            f"the API at {self.api} was not healthy within {timeout_s:.0f} s "
            f"(last check: {last_error}); see {self.log_path('api')}"
        )

    def cpu_seconds(self) -> dict[str, float]:
        """Return the CPU seconds (user + system) each process has used so far."""
        used: dict[str, float] = {}
        for name, process in self.processes.items():
            try:
                times = psutil.Process(process.pid).cpu_times()
            except psutil.Error:
                continue
            used[name] = times.user + times.system
        return used


def harness_cpu_seconds() -> float:
    """Return the CPU time (user + system, in seconds) this process has used so far."""
    times = os.times()
    return times.user + times.system


def machine_busy_seconds() -> float:
    """Return the CPU time all processes of the machine have used, summed over cores."""
    times = psutil.cpu_times()
    # Linux also reports guest time, which user time already contains, and steal
    # time, which went to other virtual machines.
    busy = times.user + times.system
    for name in ("nice", "irq", "softirq"):
        busy += getattr(times, name, 0.0)
    return busy


class CpuMeter:
    """Measures the CPU share of a stack's processes and of this harness over a span.

    A share of 1.0 means one core busy for the whole span. The ``machine`` entry
    counts every process on the machine, including ones this run did not start.
    """

    def __init__(self, stack: "Stack | None") -> None:
        self.stack = stack
        self.started = 0.0
        self.before: dict[str, float] = {}

    def start(self) -> None:
        """Record the CPU times at the start of the span."""
        self.before = self.stack.cpu_seconds() if self.stack else {}
        self.before["harness"] = harness_cpu_seconds()
        self.before["machine"] = machine_busy_seconds()
        self.started = time.monotonic()

    def shares(self) -> dict[str, float]:
        """Return each process's CPU seconds per wall-clock second since ``start``."""
        elapsed = time.monotonic() - self.started
        after = self.stack.cpu_seconds() if self.stack else {}
        after["harness"] = harness_cpu_seconds()
        after["machine"] = machine_busy_seconds()
        if elapsed <= 0:
            return {}
        return {
            name: (after[name] - self.before[name]) / elapsed
            for name in after
            if name in self.before
        }
