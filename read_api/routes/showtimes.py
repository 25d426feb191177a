"""Routes over showtimes and their seat maps."""

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import AfterValidator
from starlette.responses import Response

from projections.views import SHOWTIMES, SeatMapView, ShowtimeView
from read_api.deps import ResourcesDep, ShowtimeId
from read_api.errors import NotFoundError
from read_api.json_body import StrictJSONRoute
from read_api.queries import ShowtimeQuery
from read_api.read_models import cached_query, seat_map_bytes, showtime_bytes
from read_api.responses import MONGODB_UNAVAILABLE, error_docs, json_response

# Cached list queries expire after this many seconds, and sooner when a showtime
# changes, because the projector then increases the collection's generation.
QUERY_CACHE_TTL_S = 60

router = APIRouter(route_class=StrictJSONRoute, tags=["showtimes"])

LIST_ERRORS = error_docs({503: MONGODB_UNAVAILABLE})
ITEM_ERRORS = error_docs({404: "No showtime has this id", 503: MONGODB_UNAVAILABLE})


def check_calendar_date(text: str | None) -> str | None:
    """Raise ValueError unless ``text`` is a real calendar date."""
    if text is not None:
        date.fromisoformat(text)
    return text


MovieFilter = Annotated[
    UUID | None, Query(alias="movieId", description="Only this movie's showtimes")
]
DateFilter = Annotated[
    str | None,
    Query(
        alias="date",
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="Only showtimes on this local date of the cinema, YYYY-MM-DD",
    ),
    AfterValidator(check_calendar_date),
]


@router.get("/showtimes", response_model=list[ShowtimeView], responses=LIST_ERRORS)
async def list_showtimes(
    resources: ResourcesDep, movie_id: MovieFilter = None, local_date: DateFilter = None
) -> Response:
    """List showtimes by start time, at most 500, filtered by movie and local date."""
    query = ShowtimeQuery(
        movie_id=str(movie_id) if movie_id else None, local_date=local_date
    )
    body = await cached_query(
        resources,
        SHOWTIMES,
        query.cache_key(),
        QUERY_CACHE_TTL_S,
        lambda: query.run(resources),
    )
    return json_response(body)


@router.get(
    "/showtimes/{showtimeId}",
    response_model=ShowtimeView,
    responses=ITEM_ERRORS,
)
async def get_showtime(showtime_id: ShowtimeId, resources: ResourcesDep) -> Response:
    """Return one showtime with its count of free seats."""
    body = await showtime_bytes(resources, str(showtime_id))
    if body is None:
        raise NotFoundError(f"showtime {showtime_id} not found")
    return json_response(body)


@router.get(
    "/showtimes/{showtimeId}/seats",
    response_model=SeatMapView,
    responses=ITEM_ERRORS,
)
async def get_seat_map(showtime_id: ShowtimeId, resources: ResourcesDep) -> Response:
    """Return a showtime's seat map with the state of every seat."""
    body = await seat_map_bytes(resources, str(showtime_id))
    if body is None:
        raise NotFoundError(f"showtime {showtime_id} not found")
    return json_response(body)
