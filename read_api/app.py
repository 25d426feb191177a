"""The FastAPI application: queries over the read models and intake of commands.

Run it with ``uvicorn --factory read_api.app:create_app``.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import Depends, FastAPI

from infra.adapters import cache, kafka, mongo
from infra.adapters.cache import Keys
from infra.adapters.settings import Settings, get_settings
from read_api.body_limit import BodySizeLimitMiddleware
from read_api.deps import Resources, reject_repeated_query_parameters
from read_api.errors import install_error_handlers
from read_api.routes import bookings, health, movies, showtimes

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API application for ``settings``, read from the environment if None."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Boxoffice",
        summary="Browse movies and showtimes, book and cancel tickets",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(reject_repeated_query_parameters)],
    )
    app.state.settings = settings
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.API_MAX_BODY_BYTES)
    install_error_handlers(app)
    app.include_router(movies.router)
    app.include_router(showtimes.router)
    app.include_router(bookings.build_router(settings))
    app.include_router(health.router)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the Kafka producer, Redis client and MongoDB client, and close them at exit.

    Topics are not created here: the runtime creates them before the API starts.
    """
    settings: Settings = app.state.settings
    async with AsyncExitStack() as clients:
        producer = kafka.producer(settings)
        await producer.start()
        clients.push_async_callback(producer.stop)
        redis_client = cache.async_client(settings)
        clients.push_async_callback(redis_client.aclose)
        database = mongo.async_database(settings)
        clients.push_async_callback(database.client.close)

        app.state.resources = Resources(
            settings=settings,
            keys=Keys(settings.redis_prefix),
            producer=producer,
            redis=redis_client,
            db=database,
        )
        logger.info(
            "read API started: Kafka %s, namespace %r",
            settings.KAFKA_BOOTSTRAP_SERVERS,
            settings.NAMESPACE,
        )
        yield
    logger.info("read API stopped")
