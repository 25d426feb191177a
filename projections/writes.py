"""The writes that one batch of events makes to the read models."""

from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateMany, UpdateOne


@dataclass
class BatchWrites:
    """MongoDB updates per collection, and which views to refresh in Redis after."""

    updates: dict[str, list[UpdateOne | UpdateMany]] = field(default_factory=dict)
    showtimes: set[str] = field(default_factory=set)
    bookings: set[str] = field(default_factory=set)
    movies: set[str] = field(default_factory=set)
    # Titles of the movies this batch registers or revises, by movie id.
    movie_titles: dict[str, str | None] = field(default_factory=dict)

    def update(self, collection: str, doc_id: str, update: dict[str, Any]) -> None:
        """Queue an update of one document, creating it when it is missing."""
        operation = UpdateOne({"_id": doc_id}, update, upsert=True)
        self.updates.setdefault(collection, []).append(operation)

    def update_many(
        self, collection: str, selector: dict[str, Any], update: dict[str, Any]
    ) -> None:
        """Queue an update of every document that ``selector`` matches."""
        self.updates.setdefault(collection, []).append(UpdateMany(selector, update))
