"""Settings read from the environment, every name prefixed with ``BOXOFFICE_``."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service URLs, topic layout and limits; `boxoffice up` embeds unset services."""

    model_config = SettingsConfigDict(env_prefix="BOXOFFICE_", extra="ignore")

    POSTGRES_URL: str | None = Field(
        default=None,
        description="Event store, e.g. postgresql://user@127.0.0.1:5432/boxoffice",
    )
    REDIS_URL: str | None = Field(
        default=None, description="e.g. redis://127.0.0.1:6379/0"
    )
    KAFKA_BOOTSTRAP_SERVERS: str | None = Field(
        default=None, description="Comma-separated host:port list"
    )
    MONGODB_URL: str | None = Field(
        default=None, description="e.g. mongodb://127.0.0.1:27017"
    )
    MONGODB_DATABASE: str = "boxoffice"

    COMMAND_PARTITIONS: int = Field(default=12, ge=1, le=1024)
    EVENT_PARTITIONS: int = Field(default=12, ge=1, le=1024)
    # Prefix for Kafka topics and Redis keys, so that two stacks (or two test runs)
    # can share one broker and one Redis without seeing each other's data.
    NAMESPACE: str = Field(default="", pattern=r"^[a-z0-9-]*$", max_length=40)

    # Tansu fails InitProducerId, so the idempotent producer is off unless the
    # broker is real Kafka; duplicates are removed by booking id either way.
    KAFKA_IDEMPOTENCE: bool = False
    KAFKA_SEND_TIMEOUT_S: float = Field(default=5.0, gt=0, le=60)
    KAFKA_SESSION_TIMEOUT_MS: int = Field(default=10_000, ge=1_000)
    KAFKA_MAX_POLL_INTERVAL_MS: int = Field(default=60_000, ge=1_000)

    API_HOST: str = "127.0.0.1"
    API_PORT: int = Field(default=8000, ge=0, le=65535)
    API_MAX_WAIT_MS: int = Field(default=10_000, ge=0, le=60_000)
    API_MAX_BODY_BYTES: int = Field(default=65_536, ge=1024)
    MAX_SEATS_PER_BOOKING: int = Field(default=10, ge=1, le=100)

    TIMEZONE: str = Field(
        default="Europe/London", description="IANA zone of the cinema"
    )
    PENDING_TICKET_TTL_S: int = Field(default=86_400, ge=60)
    IDEMPOTENCY_TTL_S: int = Field(default=86_400, ge=60)

    # Test hook: sleep this long inside the first batch decision of the process, to
    # push a processor past max_poll_interval_ms in rebalance tests. Zero in every
    # real deployment.
    PROCESSOR_DEBUG_DELAY_MS: int = Field(default=0, ge=0)

    def topic(self, name: str) -> str:
        """Return the Kafka topic name for ``name`` inside this namespace."""
        return f"{self.NAMESPACE}.{name}" if self.NAMESPACE else name

    @property
    def redis_prefix(self) -> str:
        """Return the prefix of every Redis key this stack writes."""
        return f"boxoffice:{self.NAMESPACE}:" if self.NAMESPACE else "boxoffice:"

    def require(self, name: str) -> str:
        """Return the URL setting ``name``, raising when it is unset."""
        value = getattr(self, name)
        if not value:
            msg = (
                f"BOXOFFICE_{name} is not set: set it, or start the system with "
                "`boxoffice up`, which starts an embedded service for each unset URL"
            )
            raise RuntimeError(msg)
        return str(value)


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
