"""Read-model shapes: the MongoDB documents the projectors write and the JSON views
the API serves.

Projectors store documents in the collections named below and encode the hot views
(seat maps, tickets, movies) into Redis as ready JSON bytes, so the API can serve
them without decoding. The pydantic models describe those views for OpenAPI and for
the API's fallback path, which builds them from the MongoDB documents.
"""

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from domain.seating import SeatKind, row_positions

MOVIES = "movies"
SHOWTIMES = "showtimes"
BOOKINGS = "bookings"
POSITIONS = "projection_positions"

TicketStatus = Literal["pending", "confirmed", "rejected", "cancelled"]


class View(BaseModel):
    """Base of the API views: camelCase JSON names, as clients send them."""

    model_config = ConfigDict(populate_by_name=True)


class MovieView(View):
    """A film of the catalogue."""

    id: str
    title: str
    release_date: str | None = Field(alias="releaseDate")
    genre: str | None
    running_time_min: int | None = Field(alias="runningTimeMin")
    director: str | None
    mpaa_rating: str | None = Field(alias="mpaaRating")
    imdb_rating: float | None = Field(alias="imdbRating")
    imdb_votes: int | None = Field(alias="imdbVotes")
    distributor: str | None


class MoviePage(View):
    """One page of movies matching a query."""

    items: list[MovieView]
    page: int
    limit: int
    total: int


class ShowtimeView(View):
    """A screening, with how many of its seats are still free."""

    id: str
    movie_id: str = Field(alias="movieId")
    movie_title: str | None = Field(alias="movieTitle")
    auditorium_id: str = Field(alias="auditoriumId")
    auditorium_name: str = Field(alias="auditoriumName")
    starts_at: datetime = Field(alias="startsAt")
    local_date: str = Field(alias="localDate")
    capacity: int
    available: int


class SeatPosition(View):
    """One position of a row: a seat with its state, or a numbered gap."""

    seat: str
    number: int
    kind: SeatKind
    state: Literal["free", "sold", "none"]
    aisle_before: bool = Field(alias="aisleBefore")


class SeatRow(View):
    """One row of the seat map, left to right."""

    row: str
    positions: list[SeatPosition]


class SeatMapView(View):
    """A showtime's seat map with the state of every seat."""

    showtime_id: str = Field(alias="showtimeId")
    capacity: int
    available: int
    version: int
    rows: list[SeatRow]


class TicketView(View):
    """The state of a booking, as its client polls it."""

    booking_id: str = Field(alias="bookingId")
    status: TicketStatus
    showtime_id: str = Field(alias="showtimeId")
    seats: list[str]
    wheelchair_spaces: list[str] = Field(default_factory=list, alias="wheelchairSpaces")
    payment_method: str | None = Field(default=None, alias="paymentMethod")
    reason: str | None = None
    reason_code: str | None = Field(default=None, alias="reasonCode")
    rejected_seats: list[str] = Field(default_factory=list, alias="rejectedSeats")
    movie_id: str | None = Field(default=None, alias="movieId")
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    auditorium_name: str | None = Field(default=None, alias="auditoriumName")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


def movie_view(doc: dict) -> MovieView:
    """Build the API view of a movie document."""
    fields: dict[str, Any] = {k: doc.get(k) for k in MOVIE_FIELDS}
    return MovieView(id=doc["_id"], **fields)


MOVIE_FIELDS = (
    "title",
    "releaseDate",
    "genre",
    "runningTimeMin",
    "director",
    "mpaaRating",
    "imdbRating",
    "imdbVotes",
    "distributor",
)


def showtime_view(doc: dict) -> ShowtimeView:
    """Build the API view of a showtime document."""
    return ShowtimeView(
        id=doc["_id"],
        movieId=doc["movieId"],
        movieTitle=doc.get("movieTitle"),
        auditoriumId=doc["auditoriumId"],
        auditoriumName=doc["auditoriumName"],
        startsAt=doc["startsAt"],
        localDate=doc["localDate"],
        capacity=doc["capacity"],
        available=doc["capacity"] - len(doc.get("sold", {})),
    )


def seat_map_view(doc: dict) -> SeatMapView:
    """Build the seat map of a showtime document, marking each sold seat."""
    sold = doc.get("sold", {})
    rows = []
    for label, layout in doc["rows"]:
        positions = [
            SeatPosition(
                seat=p.seat_id,
                number=p.number,
                kind=p.kind,
                state="none"
                if p.kind == SeatKind.GAP
                else ("sold" if p.seat_id in sold else "free"),
                aisleBefore=p.aisle_before,
            )
            for p in row_positions(label, layout)
        ]
        rows.append(SeatRow(row=label, positions=positions))

    return SeatMapView(
        showtimeId=doc["_id"],
        capacity=doc["capacity"],
        available=doc["capacity"] - len(sold),
        version=doc["version"],
        rows=rows,
    )


def ticket_view(doc: dict) -> TicketView:
    """Build the API view of a booking document."""
    fields = {k: v for k, v in doc.items() if k not in ("_id", "version")}
    return TicketView(bookingId=doc["_id"], **fields)


def encode(view: View) -> bytes:
    """Return the JSON bytes of a view, with its camelCase names."""
    return orjson.dumps(view.model_dump(mode="json", by_alias=True))
