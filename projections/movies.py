"""The movies read model: one document per film, for catalogue queries."""

from typing import Any

from domain.movie import Movie
from projections.views import MOVIES, SHOWTIMES
from projections.writes import BatchWrites

# Event field names (snake_case) to document field names (camelCase).
FIELD_NAMES = {
    "title": "title",
    "release_date": "releaseDate",
    "genre": "genre",
    "running_time_min": "runningTimeMin",
    "director": "director",
    "mpaa_rating": "mpaaRating",
    "imdb_rating": "imdbRating",
    "imdb_votes": "imdbVotes",
    "distributor": "distributor",
}


class MovieProjection:
    """Keeps the ``movies`` collection in step with Movie events."""

    def apply(self, event: Any, writes: BatchWrites) -> None:
        """Apply one event; events of other aggregates are ignored."""
        if isinstance(event, Movie.Registered | Movie.Revised):
            self.set_details(event, writes)

    def set_details(
        self, event: Movie.Registered | Movie.Revised, writes: BatchWrites
    ) -> None:
        """Write the film's details, with lower-case copies for queries."""
        movie_id = str(event.originator_id)
        fields = {
            FIELD_NAMES[k]: v for k, v in event.details.items() if k in FIELD_NAMES
        }
        fields["titleKey"] = str(fields.get("title") or "").casefold()
        fields["genreKey"] = str(fields.get("genre") or "").casefold() or None
        fields["version"] = event.originator_version
        writes.update(MOVIES, movie_id, {"$set": fields})
        writes.movies.add(movie_id)
        title = str(fields["title"]) if fields.get("title") is not None else None
        writes.movie_titles[movie_id] = title

        # Showtimes carry the title; one may have been projected before its movie,
        # because movie and showtime events travel in different partitions.
        update = {"$set": {"movieTitle": title}}
        writes.update_many(SHOWTIMES, {"movieId": movie_id}, update)
