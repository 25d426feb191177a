"""Routes over the movie catalogue."""

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from projections.views import MOVIES, MoviePage, MovieView
from read_api.deps import MovieId, ResourcesDep
from read_api.errors import NotFoundError
from read_api.json_body import StrictJSONRoute
from read_api.queries import MovieQuery
from read_api.read_models import cached_query, movie_bytes
from read_api.responses import MONGODB_UNAVAILABLE, error_docs, json_response

# Cached list queries expire after this many seconds, and sooner when a movie
# changes, because the projector then increases the collection's generation.
QUERY_CACHE_TTL_S = 60

router = APIRouter(route_class=StrictJSONRoute, tags=["movies"])

LIST_ERRORS = error_docs({503: MONGODB_UNAVAILABLE})
ITEM_ERRORS = error_docs({404: "No movie has this id", 503: MONGODB_UNAVAILABLE})

Page = Annotated[int, Query(ge=1, le=10_000, description="Page number, from 1")]
Limit = Annotated[int, Query(ge=1, le=100, description="Movies per page")]
Genre = Annotated[
    str | None, Query(max_length=100, description="Genre, matched ignoring case")
]
Title = Annotated[
    str | None,
    Query(max_length=200, description="Part of the title, matched ignoring case"),
]


@router.get("/movies", response_model=MoviePage, responses=LIST_ERRORS)
async def list_movies(
    resources: ResourcesDep,
    page: Page = 1,
    limit: Limit = 20,
    genre: Genre = None,
    title: Title = None,
) -> Response:
    """List movies sorted by title, filtered by genre and by part of the title."""
    query = MovieQuery(page=page, limit=limit, genre=genre, title=title)
    body = await cached_query(
        resources,
        MOVIES,
        query.cache_key(),
        QUERY_CACHE_TTL_S,
        lambda: query.run(resources),
    )
    return json_response(body)


@router.get(
    "/movies/{movieId}",
    response_model=MovieView,
    responses=ITEM_ERRORS,
)
async def get_movie(movie_id: MovieId, resources: ResourcesDep) -> Response:
    """Return one movie of the catalogue."""
    body = await movie_bytes(resources, str(movie_id))
    if body is None:
        raise NotFoundError(f"movie {movie_id} not found")
    return json_response(body)
