"""The Movie aggregate: one film of the catalogue, identified by title and release."""

from dataclasses import asdict, dataclass
from datetime import date
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

MOVIE_NAMESPACE = UUID("0d7c3f7e-8a51-4b8e-b5c4-3e4b7f1f9d10")


@dataclass(frozen=True)
class MovieDetails:
    """Details of a film from the catalogue. Only the title is required."""

    title: str
    release_date: date | None
    genre: str | None
    running_time_min: int | None
    director: str | None
    mpaa_rating: str | None
    imdb_rating: float | None
    imdb_votes: int | None
    distributor: str | None

    def as_event_fields(self) -> dict[str, object]:
        """Return the details as plain values that the event store can encode."""
        fields = asdict(self)
        release = self.release_date
        fields["release_date"] = release.isoformat() if release else None
        return fields


class Movie(Aggregate):
    """A film that showtimes can be scheduled for."""

    class Registered(Aggregate.Created):
        """The film entered the catalogue."""

        details: dict[str, object]

    class Revised(Aggregate.Event):
        """The catalogue corrected the film's details."""

        details: dict[str, object]

    @staticmethod
    def create_id(details: dict[str, object], **_: object) -> UUID:
        """Derive the id from title and release date, so importing twice is harmless."""
        return movie_id(str(details["title"]), details.get("release_date"))

    @event(Registered)
    def __init__(self, details: dict[str, object]) -> None:
        self.details = details

    def revise(self, details: MovieDetails) -> bool:
        """Record new details when they differ, returning whether anything changed."""
        fields = details.as_event_fields()
        if fields == self.details:
            return False

        self._revise(fields)
        return True

    @event(Revised)
    def _revise(self, details: dict[str, object]) -> None:
        self.details = details


def movie_id(title: str, release_date: object) -> UUID:
    """Return the stable id of the film with this title and ISO release date.

    Remakes share titles, so the release date is part of the identity. A title
    with no release date gets the id of "title|".
    """
    return uuid5(MOVIE_NAMESPACE, f"{title.strip().casefold()}|{release_date or ''}")
