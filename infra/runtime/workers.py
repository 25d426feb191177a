"""Running one worker (processor, relay or projector) until SIGINT or SIGTERM."""

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from commands.processor import CommandProcessor
from commands.relay import EventRelay
from infra.adapters.settings import Settings
from projections.projector import ProjectorRunner

logger = logging.getLogger(__name__)

WORKERS: dict[str, Callable[[Settings], object]] = {
    "processor": CommandProcessor,
    "relay": EventRelay,
    "projector": ProjectorRunner,
}


async def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``run(stop)`` and set ``stop`` on the first SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run(stop)


def run_worker(name: str, settings: Settings) -> None:
    """Build the named worker and run it until it is signalled to stop."""

    async def main() -> None:
        # aiokafka clients must be built inside the running event loop.
        worker = WORKERS[name](settings)
        await run_until_signalled(worker.run)  # type: ignore[attr-defined]

    logger.info("starting worker %s", name)
    asyncio.run(main())
    logger.info("worker %s exited", name)
