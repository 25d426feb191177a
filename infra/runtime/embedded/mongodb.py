"""Embedded MongoDB: a SecantusDB server, run through its secantusd-py command.

SecantusDB is GPL-2.0-only, so this module runs the command and never imports a
``secantus`` module.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pymongo
import pymongo.errors

from infra.runtime.embedded.leftover import _stop_leftover_from_pid_file
from infra.runtime.embedded.process import (
    DEFAULT_START_TIMEOUT_S,
    HOST,
    EmbeddedService,
    _missing_package_error,
    _NotReadyError,
)
from infra.runtime.embedded.startup import _prepare_data_dir, _ServerSpec, _start_server


def start_mongodb(
    data_dir: Path, timeout: float = DEFAULT_START_TIMEOUT_S, port: int | None = None
) -> EmbeddedService:
    """Start a SecantusDB server and wait until it responds to ``ping``.

    Data lives in ``<data_dir>/mongodb``. The URL sets ``retryWrites=false``. The
    server advertises itself as the primary of a one-node replica set named
    ``secantus``, so pymongo connects to it as a replica set. It listens on
    ``port``, or on a free port when it is None.
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
    return _start_server(spec, data_dir, timeout, port)


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
