"""Shared fixtures: real services, and fresh names for every test's data.

PostgreSQL and Redis: the servers at 127.0.0.1:5432 (database ``test``) and
127.0.0.1:6379 when they accept connections, as on the project's machines.
Otherwise embedded ones. Kafka (Tansu) and MongoDB (SecantusDB) are started once
per session. Set ``BOXOFFICE_TEST_<NAME>_URL`` to use other servers. Every test
gets its own database, topic namespace, MongoDB database and Redis key prefix, so
it never sees another run's data.
"""

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymongo
import pytest
import redis
from psycopg import sql

from infra.adapters.settings import Settings
from infra.runtime import embedded

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
CATALOG_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "movies.json"


def answers(host: str, port: int) -> bool:
    """Return whether a TCP server accepts connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start or find the four servers once for the whole test session."""
    data_dir = tmp_path_factory.mktemp("services")
    started: list[embedded.EmbeddedService] = []
    urls = {
        "postgres": os.environ.get("BOXOFFICE_TEST_POSTGRES_URL", ""),
        "redis": os.environ.get("BOXOFFICE_TEST_REDIS_URL", ""),
        "kafka": os.environ.get("BOXOFFICE_TEST_KAFKA_URL", ""),
        "mongodb": os.environ.get("BOXOFFICE_TEST_MONGODB_URL", ""),
    }
    if not urls["postgres"]:
        urls["postgres"] = LOCAL_POSTGRES if answers("127.0.0.1", 5432) else ""
    if not urls["redis"]:
        urls["redis"] = LOCAL_REDIS if answers("127.0.0.1", 6379) else ""

    starters = {
        "postgres": embedded.start_postgres,
        "redis": embedded.start_redis,
        "kafka": embedded.start_kafka,
        "mongodb": embedded.start_mongodb,
    }
    try:
        for name, start in starters.items():
            if not urls[name]:
                service = start(data_dir)
                started.append(service)
                urls[name] = service.url
        yield urls
    finally:
        for service in reversed(started):
            service.stop()


def fresh_name(prefix: str) -> str:
    """Return a name no earlier run has used."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def postgres_url(service_urls: dict[str, str]) -> Iterator[str]:
    """Create a fresh database for one test and drop it after."""
    name = fresh_name("bo_test_")
    base = service_urls["postgres"]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )


@pytest.fixture
def settings(service_urls: dict[str, str], postgres_url: str) -> Iterator[Settings]:
    """Settings for one test: real servers, fresh database, topics and keys.

    The test's Redis keys and MongoDB database are deleted after it.
    """
    namespace = fresh_name("t")
    test_settings = Settings(
        POSTGRES_URL=postgres_url,
        REDIS_URL=service_urls["redis"],
        KAFKA_BOOTSTRAP_SERVERS=service_urls["kafka"],
        MONGODB_URL=service_urls["mongodb"],
        MONGODB_DATABASE=namespace,
        NAMESPACE=namespace,
        COMMAND_PARTITIONS=4,
        EVENT_PARTITIONS=4,
    )
    yield test_settings
    delete_test_data(test_settings)


def delete_test_data(settings: Settings) -> None:
    """Delete one test's Redis keys and MongoDB database."""
    client = redis.Redis.from_url(settings.require("REDIS_URL"))
    try:
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()

    mongo_client: pymongo.MongoClient = pymongo.MongoClient(
        settings.require("MONGODB_URL"), serverSelectionTimeoutMS=5000
    )
    try:
        mongo_client.drop_database(settings.MONGODB_DATABASE)
    finally:
        mongo_client.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """Return ``settings`` as BOXOFFICE_ environment variables for a child process."""
    values = settings.model_dump(exclude_none=True)
    return {f"BOXOFFICE_{name}": str(value) for name, value in values.items()}
