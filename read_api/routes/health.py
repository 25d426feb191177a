"""The health check that load balancers and operators call."""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from fastapi import APIRouter, HTTPException
from starlette.responses import JSONResponse

from infra.adapters.kafka import COMMANDS_TOPIC
from infra.adapters.lag import consumer_lag
from read_api.body import Health
from read_api.deps import Resources, ResourcesDep
from read_api.json_body import StrictJSONRoute

logger = logging.getLogger(__name__)

# Each dependency must respond to its ping within this many seconds.
PING_TIMEOUT_S = 1.0
LAG_TIMEOUT_S = 10.0

router = APIRouter(route_class=StrictJSONRoute, tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency failed"}},
)
async def health(resources: ResourcesDep) -> JSONResponse:
    """Ping Redis, MongoDB and Kafka, with a 503 response naming each that failed."""
    redis_state, mongodb_state, kafka_state = await asyncio.gather(
        ping("redis", ping_redis(resources)),
        ping("mongodb", ping_mongodb(resources)),
        ping("kafka", ping_kafka(resources)),
    )
    checks = {"redis": redis_state, "mongodb": mongodb_state, "kafka": kafka_state}
    healthy = all(state == "ok" for state in checks.values())
    report = Health(status="ok" if healthy else "unavailable", checks=checks)
    return JSONResponse(report.model_dump(), status_code=200 if healthy else 503)


async def ping_redis(resources: Resources) -> None:
    """Send PING to Redis."""
    await resources.redis.ping()


async def ping_mongodb(resources: Resources) -> None:
    """Run MongoDB's ping command."""
    await resources.db.command("ping")


async def ping_kafka(resources: Resources) -> None:
    """Fetch cluster metadata with the API's producer, and check the command topic.

    ``fetch_all_metadata`` sends a Metadata request to the brokers in the
    producer's cluster metadata, one at a time, and raises KafkaError when none
    responds (aiokafka 0.14, aiokafka/client.py).
    """
    metadata = await resources.producer.client.fetch_all_metadata()
    topic = resources.settings.topic(COMMANDS_TOPIC)
    if topic not in metadata.topics():
        raise UnknownTopicOrPartitionError(f"topic {topic} not found")


async def ping(name: str, call: Coroutine[Any, Any, None]) -> str:
    """Await one ping with a timeout, returning "ok" or what went wrong."""
    try:
        await asyncio.wait_for(call, PING_TIMEOUT_S)
    except TimeoutError:
        logger.warning(
            "health check: %s did not respond within %s s", name, PING_TIMEOUT_S
        )
        return f"timed out after {PING_TIMEOUT_S} s"
    except Exception as error:
        logger.warning("health check: %s failed: %r", name, error)
        return f"failed: {type(error).__name__}"
    return "ok"


@router.get("/lag", response_model=dict[str, int])
async def lag(resources: ResourcesDep) -> dict[str, int]:
    """Count the records each consumer group has yet to process (0: caught up)."""
    try:
        return await asyncio.wait_for(consumer_lag(resources.settings), LAG_TIMEOUT_S)
    except (TimeoutError, KafkaError) as error:
        logger.warning("lag query failed: %r", error)
        raise HTTPException(503, f"Kafka did not report offsets: {error!r}") from error
