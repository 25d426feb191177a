"""Importing a movie catalogue feed: every usable record becomes a Movie aggregate.

Ids come from title and release date, so importing the same feed again changes
nothing, and a feed that corrects a film's details records a Revised event.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

from domain.catalog import (
    IgnoredValue,
    RejectedRecord,
    find_ignored_values,
    parse_feed,
    parse_record,
)
from domain.movie import Movie, MovieDetails, movie_id

logger = logging.getLogger(__name__)

SAVE_BATCH = 200


class CatalogFileError(Exception):
    """Raised when a catalogue file cannot be read as a JSON list of records."""


@dataclass
class ImportReport:
    """Outcome of an import: counts, the films in the feed and each rejected record."""

    registered: int = 0
    revised: int = 0
    unchanged: int = 0
    rejected: list[RejectedRecord] = field(default_factory=list)
    ignored: list[IgnoredValue] = field(default_factory=list)
    movies: list[tuple[UUID, MovieDetails]] = field(default_factory=list)


class Catalog(Application):
    """Writes Movie aggregates to the event store."""

    # Shares the event tables with every other Boxoffice application.
    name = "boxoffice"

    def import_feed(self, records: list[object]) -> ImportReport:
        """Register new films and revise changed ones; report every rejected record."""
        details, rejected = parse_feed(records)
        report = ImportReport(rejected=rejected)
        report.ignored = ignored_values(records, rejected)
        pending: list[Movie] = []

        for movie in details:
            aggregate = self.register_or_revise(movie, report)
            if aggregate is not None:
                pending.append(aggregate)
            if len(pending) >= SAVE_BATCH:
                self.save(*pending)
                pending.clear()
        if pending:
            self.save(*pending)

        logger.info(
            "catalogue import: %s registered, %s revised, %s unchanged, %s rejected",
            report.registered,
            report.revised,
            report.unchanged,
            len(report.rejected),
        )
        return report

    def register_or_revise(
        self, details: MovieDetails, report: ImportReport
    ) -> Movie | None:
        """Return a new or revised Movie to save, or None when it is unchanged."""
        fields = details.as_event_fields()
        aggregate_id = movie_id(details.title, fields["release_date"])
        report.movies.append((aggregate_id, details))
        try:
            existing: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            report.registered += 1
            return Movie(details=fields)

        if isinstance(existing, Movie) and existing.revise(details):
            report.revised += 1
            return existing
        report.unchanged += 1
        return None


def ignored_values(
    records: list[object], rejected: list[RejectedRecord]
) -> list[IgnoredValue]:
    """Return the unusable values of every record that was not rejected."""
    skipped = {r.index for r in rejected}
    ignored: list[IgnoredValue] = []
    for index, record in enumerate(records):
        if index in skipped:
            continue
        details = parse_record(index, record)
        if not isinstance(details, RejectedRecord):
            ignored += find_ignored_values(index, record, details)
    return ignored


def read_feed(path: Path) -> list[object]:
    """Read a catalogue file, raising CatalogFileError that names the problem."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CatalogFileError(
            f"cannot read catalogue {path}: {error.strerror}"
        ) from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CatalogFileError(
            f"catalogue {path} is not valid JSON: {error}"
        ) from error
    if not isinstance(records, list):
        msg = f"catalogue {path} holds a JSON {type(records).__name__}, expected a list"
        raise CatalogFileError(msg)
    return records
