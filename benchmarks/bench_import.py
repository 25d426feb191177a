"""Catalogue import: a whole feed into an empty event store, like ``import-movies``."""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.services import Workspace
from benchmarks.stats import Summary, summarize
from commands.catalog_import import Catalog, read_feed
from infra.adapters.event_store import create_tables, postgres_env

logger = logging.getLogger(__name__)


@dataclass
class ImportResult:
    """Timings of repeated imports of one catalogue file, each into a new database."""

    path: Path
    records: int
    registered: int
    rejected: int
    seconds: Summary
    records_per_s: Summary


def measure_catalog_import(
    workspace: Workspace, catalog_path: Path, repetitions: int
) -> ImportResult:
    """Import ``catalog_path`` into ``repetitions`` empty databases, timing each.

    The time covers reading and parsing the file and storing every Movie aggregate.
    Creating the tables is done before the clock starts.
    """
    seconds: list[float] = []
    records = registered = rejected = 0
    for repetition in range(1, repetitions + 1):
        url = workspace.new_database()
        create_tables(url)
        catalog = Catalog(env=postgres_env(url))
        try:
            started = time.perf_counter()
            feed = read_feed(catalog_path)
            report = catalog.import_feed(feed)
            elapsed = time.perf_counter() - started
        finally:
            catalog.close()
            workspace.drop_database(url)

        records, registered, rejected = (
            len(feed),
            report.registered,
            len(report.rejected),
        )
        seconds.append(elapsed)
        logger.info(
            "import %d/%d: %d records (%d registered, %d rejected) in %.2f s",
            repetition,
            repetitions,
            records,
            registered,
            rejected,
            elapsed,
        )
    return ImportResult(
        path=catalog_path,
        records=records,
        registered=registered,
        rejected=rejected,
        seconds=summarize(seconds),
        records_per_s=summarize([records / s for s in seconds]),
    )
