"""Reading records of an external movie feed into MovieDetails, one record at a time.

The feed is a JSON list of objects with keys such as ``Title``, ``Release Date``
("Jun 12 1998"), ``Major Genre`` and ``Running Time min``. Real feeds are messy:
integer titles (the film "1776"), null titles, missing fields, remakes sharing a
title. A record is rejected only when it names no film; every other problem leaves
that one field empty.
"""

import math
from dataclasses import dataclass
from datetime import date, datetime

from domain.movie import MovieDetails, movie_id

MAX_TITLE_LENGTH = 300
MAX_TEXT_LENGTH = 200


@dataclass(frozen=True)
class RejectedRecord:
    """A feed record that was not imported: its index in the feed and the reason."""

    index: int
    reason: str


def parse_record(index: int, record: object) -> MovieDetails | RejectedRecord:
    """Read one feed record, returning its details or why it was rejected."""
    if not isinstance(record, dict):
        return RejectedRecord(
            index, f"record is a {type(record).__name__}, not an object"
        )

    title = parse_title(record.get("Title"))
    if isinstance(title, RejectedRecord):
        return RejectedRecord(index, title.reason)

    return MovieDetails(
        title=title,
        release_date=parse_release_date(record.get("Release Date")),
        genre=parse_text(record.get("Major Genre")),
        running_time_min=parse_count(record.get("Running Time min"), maximum=1000),
        director=parse_text(record.get("Director")),
        mpaa_rating=parse_text(record.get("MPAA Rating")),
        imdb_rating=parse_rating(record.get("IMDB Rating")),
        imdb_votes=parse_count(record.get("IMDB Votes"), maximum=10**9),
        distributor=parse_text(record.get("Distributor")),
    )


# Feed keys and the MovieDetails fields they fill.
FEED_FIELDS = {
    "Release Date": "release_date",
    "Major Genre": "genre",
    "Running Time min": "running_time_min",
    "Director": "director",
    "MPAA Rating": "mpaa_rating",
    "IMDB Rating": "imdb_rating",
    "IMDB Votes": "imdb_votes",
    "Distributor": "distributor",
}


@dataclass(frozen=True)
class IgnoredValue:
    """A value of an imported record that was not usable and was left empty."""

    index: int
    key: str
    value: str


def find_ignored_values(
    index: int, record: object, details: MovieDetails
) -> list[IgnoredValue]:
    """Return the record's non-null values that parsing had to leave empty."""
    if not isinstance(record, dict):
        return []

    ignored = []
    for key, field_name in FEED_FIELDS.items():
        value = record.get(key)
        if value is not None and getattr(details, field_name) is None:
            ignored.append(IgnoredValue(index, key, short_repr(value)))
    return ignored


def short_repr(value: object) -> str:
    """Return ``repr(value)``, cut to 60 characters for reports."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_title(value: object) -> str | RejectedRecord:
    """Return the title as text; integer titles such as 1776 are real film names."""
    if value is None:
        return RejectedRecord(-1, "Title is missing (null)")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return RejectedRecord(
            -1, f"Title {value!r} is a {type(value).__name__}, not text"
        )

    title = " ".join(str(value).split())
    if not title:
        return RejectedRecord(-1, "Title is empty")
    if len(title) > MAX_TITLE_LENGTH:
        return RejectedRecord(-1, f"Title is longer than {MAX_TITLE_LENGTH} characters")
    return title


def parse_release_date(value: object) -> date | None:
    """Parse dates written like "Jun 12 1998" or "1998-06-12"; anything else is None."""
    if not isinstance(value, str):
        return None

    for pattern in ("%b %d %Y", "%Y-%m-%d", "%d-%b-%y"):
        try:
            return datetime.strptime(value.strip(), pattern).date()
        except ValueError:
            continue
    return None


def parse_text(value: object) -> str | None:
    """Return a short non-empty text, or None."""
    if not isinstance(value, str):
        return None

    text = " ".join(value.split())
    return text[:MAX_TEXT_LENGTH] if text else None


def parse_count(value: object, maximum: int) -> int | None:
    """Return a positive whole number up to ``maximum``, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Compare before converting: an int past the float range would overflow.
    if isinstance(value, float) and (
        not math.isfinite(value) or not value.is_integer()
    ):
        return None
    if not 0 < value <= maximum:
        return None
    return int(value)


def parse_rating(value: object) -> float | None:
    """Return a rating on the 0 to 10 scale, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not 0 <= value <= 10:
        return None
    return float(value)


def parse_feed(
    records: list[object],
) -> tuple[list[MovieDetails], list[RejectedRecord]]:
    """Read a whole feed, dropping later records that repeat an earlier film."""
    movies: list[MovieDetails] = []
    rejected: list[RejectedRecord] = []
    first_index: dict[object, int] = {}

    for index, record in enumerate(records):
        parsed = parse_record(index, record)
        if isinstance(parsed, RejectedRecord):
            rejected.append(parsed)
            continue

        key = movie_id(parsed.title, parsed.as_event_fields()["release_date"])
        if key in first_index:
            reason = (
                f"duplicate of record {first_index[key]} (same title and release date)"
            )
            rejected.append(RejectedRecord(index, reason))
            continue

        first_index[key] = index
        movies.append(parsed)
    return movies, rejected
