"""The list queries over movies and showtimes, their MongoDB filters and cache keys."""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from projections.views import (
    MOVIES,
    SHOWTIMES,
    MoviePage,
    encode,
    movie_view,
    showtime_view,
)
from read_api.deps import Resources
from read_api.read_models import count_documents, find_documents

# Showtime lists are cut to this many, the earliest first.
MAX_SHOWTIMES = 500


@dataclass(frozen=True)
class MovieQuery:
    """One page of movies, filtered by genre and by part of the title."""

    page: int
    limit: int
    genre: str | None
    title: str | None

    def mongo_filter(self) -> dict[str, Any]:
        """Return the filter: genre equal to, title containing, both ignoring case."""
        query: dict[str, Any] = {}
        if self.genre:
            pattern = f"^{re.escape(self.genre)}$"
            query["genre"] = {"$regex": pattern, "$options": "i"}
        if self.title:
            query["title"] = {"$regex": re.escape(self.title), "$options": "i"}
        return query

    def cache_key(self) -> str:
        """Return the query as a canonical string, lowercase like the filters match."""
        params = {
            "genre": (self.genre or "").lower(),
            "limit": self.limit,
            "page": self.page,
            "title": (self.title or "").lower(),
        }
        return urlencode(params)

    async def run(self, resources: Resources) -> bytes:
        """Return the encoded MoviePage from MongoDB."""
        query = self.mongo_filter()
        documents = await find_documents(
            resources,
            MOVIES,
            query,
            sort=[("title", 1), ("_id", 1)],
            skip=(self.page - 1) * self.limit,
            limit=self.limit,
        )
        total = await count_documents(resources, MOVIES, query)
        page = MoviePage(
            items=[movie_view(document) for document in documents],
            page=self.page,
            limit=self.limit,
            total=total,
        )
        return encode(page)


@dataclass(frozen=True)
class ShowtimeQuery:
    """The showtimes of a movie, of a local date, or both."""

    movie_id: str | None
    local_date: str | None

    def mongo_filter(self) -> dict[str, Any]:
        """Return the MongoDB filter for the given movie id and local date."""
        query: dict[str, Any] = {}
        if self.movie_id:
            query["movieId"] = self.movie_id
        if self.local_date:
            query["localDate"] = self.local_date
        return query

    def cache_key(self) -> str:
        """Return the query as a canonical string."""
        return urlencode(
            {"date": self.local_date or "", "movieId": self.movie_id or ""}
        )

    async def run(self, resources: Resources) -> bytes:
        """Return the encoded list of ShowtimeViews from MongoDB, earliest first."""
        documents = await find_documents(
            resources,
            SHOWTIMES,
            self.mongo_filter(),
            sort=[("startsAt", 1), ("_id", 1)],
            skip=0,
            limit=MAX_SHOWTIMES,
        )
        views = [showtime_view(document) for document in documents]
        return orjson.dumps(
            [view.model_dump(mode="json", by_alias=True) for view in views]
        )
