"""Property-based requests from the API's own OpenAPI schema: no input may cause a 5xx.

Schemathesis generates requests for every operation, valid and invalid, and runs
them in-process against the app on the real services. Schemathesis runs the app's
lifespan in an event loop thread of its own, and ends it when the module is done.
"""

import asyncio
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from infra.adapters import kafka
from infra.adapters.settings import Settings
from read_api.app import create_app
from tests.integration.test_api_support import (
    api_settings,
    namespace_stores,
    seed_booking,
    seed_movie,
    seed_showtime,
)

pytestmark = pytest.mark.integration

# Examples per operation. The whole file ran in about 15 s at 60 on a 2-core
# machine, services included.
MAX_EXAMPLES = 60
# A short wait limit keeps generated ?wait= values from stalling the run. The
# schema and the app under test both use it, so the schema's maximum is enforced.
MAX_WAIT_MS = 50


@pytest.fixture(scope="module")
def api_app(service_urls: dict[str, str]) -> Iterator[FastAPI]:
    """Build an app on a fresh namespace with a little data in it."""
    api = api_settings(
        service_urls, API_MAX_WAIT_MS=MAX_WAIT_MS, KAFKA_SEND_TIMEOUT_S=2.0
    )
    asyncio.run(kafka.create_topics(api))
    with namespace_stores(api) as stores:
        seed_movie(stores, title="The Matrix", genre="Action")
        showtime = seed_showtime(stores)
        seed_booking(stores, showtime, "confirmed")
        try:
            yield create_app(api)
        finally:
            asgi.shutdown_lifespans()


# NOTE: the schema is loaded at import from an app that never starts, and each
# case is sent to the fixture's app. schemathesis.pytest.from_fixture would be
# the usual way, but in schemathesis 4.32.5 it reads request.node._nodeid, which
# pytest 9.2 no longer has (AttributeError).
schema = schemathesis.openapi.from_dict(
    create_app(Settings(API_MAX_WAIT_MS=MAX_WAIT_MS)).openapi()
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case, api_app: FastAPI) -> None:
    case.call_and_validate(app=api_app, checks=[not_a_server_error])
