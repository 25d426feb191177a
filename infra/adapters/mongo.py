"""MongoDB clients for the read models.

``retryWrites`` is off because SecantusDB's single writes were measured to slow
down fivefold with pymongo's default ``retryWrites=true``. Projectors write in
transactions and their updates are idempotent, so they retry a failed batch whole.
"""

from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database

from infra.adapters.settings import Settings

SERVER_SELECTION_TIMEOUT_MS = 5_000


def database(settings: Settings) -> Database:
    """Return the read-model database through a synchronous client."""
    client: MongoClient = MongoClient(
        settings.require("MONGODB_URL"),
        retryWrites=False,
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
        tz_aware=True,
    )
    return client[settings.MONGODB_DATABASE]


def async_database(settings: Settings) -> AsyncDatabase:
    """Return the read-model database through an asyncio client."""
    client: AsyncMongoClient = AsyncMongoClient(
        settings.require("MONGODB_URL"),
        retryWrites=False,
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
        tz_aware=True,
    )
    return client[settings.MONGODB_DATABASE]
