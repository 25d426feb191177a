"""MongoDB indexes of the read models, for the API's queries."""

from pymongo.database import Database

from projections.views import MOVIES, SHOWTIMES


def create_indexes(db: Database) -> None:
    """Create the read models' indexes; existing ones are left as they are."""
    db[MOVIES].create_index([("titleKey", 1), ("_id", 1)])
    db[MOVIES].create_index("genreKey")
    db[SHOWTIMES].create_index([("movieId", 1), ("startsAt", 1)])
    db[SHOWTIMES].create_index([("localDate", 1), ("startsAt", 1)])
