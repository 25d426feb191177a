"""Redis clients and the key names of every value Boxoffice keeps in Redis.

Redis holds only what can be rebuilt from the event store or from MongoDB: ready
encoded read models, pending-ticket markers and idempotency keys. A lost Redis
costs speed, not data.
"""

import redis
import redis.asyncio

from infra.adapters.settings import Settings

SOCKET_TIMEOUT_S = 2.0


def client(settings: Settings) -> redis.Redis:
    """Return a synchronous Redis client."""
    return redis.Redis.from_url(
        settings.require("REDIS_URL"),
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
    )


def async_client(settings: Settings) -> redis.asyncio.Redis:
    """Return an asyncio Redis client."""
    return redis.asyncio.Redis.from_url(
        settings.require("REDIS_URL"),
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
    )


class Keys:
    """Redis key names, all under the stack's prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def seat_map(self, showtime_id: str) -> str:
        """Key of a showtime's encoded seat map with each seat's state."""
        return f"{self.prefix}showtime:{showtime_id}:seats"

    def ticket(self, booking_id: str) -> str:
        """Key of a booking's encoded ticket view."""
        return f"{self.prefix}ticket:{booking_id}"

    def movie(self, movie_id: str) -> str:
        """Key of a movie's encoded view."""
        return f"{self.prefix}movie:{movie_id}"

    def idempotency(self, key: str) -> str:
        """Key recording which booking an Idempotency-Key created."""
        return f"{self.prefix}idempotency:{key}"

    def generation(self, collection: str) -> str:
        """Counter bumped by projectors whenever ``collection`` changes."""
        return f"{self.prefix}generation:{collection}"

    def query(self, collection: str, generation: int, query: str) -> str:
        """Key of one cached list query, tied to the collection's generation."""
        return f"{self.prefix}query:{collection}:{generation}:{query}"
