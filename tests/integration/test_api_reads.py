"""Read routes of the API: Redis first, then MongoDB, and 404 when neither has it."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from projections.views import MOVIES, SHOWTIMES, TicketView, encode
from read_api.queries import MovieQuery
from tests.integration.test_api_support import (
    ApiStack,
    new_id,
    open_stack,
    seed_booking,
    seed_movie,
    seed_showtime,
)

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(service_urls: dict[str, str]) -> AsyncIterator[ApiStack]:
    """Run one API for the module on a namespace of its own."""
    async with open_stack(service_urls) as running:
        yield running


def token() -> str:
    """Return a word no other test uses, to keep each test's movies apart."""
    return f"z{uuid.uuid4().hex[:10]}"


class TestListMovies:
    async def test_filters_by_title_substring_ignoring_case(
        self, stack: ApiStack
    ) -> None:
        word = token()
        matrix = seed_movie(stack, title=f"The {word.upper()} Reloaded")
        seed_movie(stack, title="Something else entirely")

        response = await stack.client.get("/movies", params={"title": word})

        assert response.status_code == 200
        page = response.json()
        assert [item["id"] for item in page["items"]] == [matrix["_id"]]
        assert page["total"] == 1
        assert page["page"] == 1
        assert page["limit"] == 20

    async def test_filters_by_exact_genre_ignoring_case(self, stack: ApiStack) -> None:
        genre = token()
        wanted = seed_movie(stack, title="Genre match", genre=genre)
        seed_movie(stack, title="Genre prefix only", genre=genre + "x")

        response = await stack.client.get("/movies", params={"genre": genre.upper()})

        assert response.status_code == 200
        assert [item["id"] for item in response.json()["items"]] == [wanted["_id"]]

    async def test_title_regex_characters_match_literally(
        self, stack: ApiStack
    ) -> None:
        word = token()
        literal = seed_movie(stack, title=f"{word} (.*) cut")
        seed_movie(stack, title=f"{word} plain cut")

        response = await stack.client.get("/movies", params={"title": f"{word} (.*)"})

        assert [item["id"] for item in response.json()["items"]] == [literal["_id"]]

    async def test_sorts_by_title_then_id_and_pages(self, stack: ApiStack) -> None:
        genre = token()
        titles = ["Bravo", "Alpha", "Charlie", "Alpha"]
        movies = [seed_movie(stack, title=title, genre=genre) for title in titles]
        expected = sorted(movies, key=lambda movie: (movie["title"], movie["_id"]))

        first = await stack.client.get(
            "/movies", params={"genre": genre, "limit": 3, "page": 1}
        )
        second = await stack.client.get(
            "/movies", params={"genre": genre, "limit": 3, "page": 2}
        )

        ids = [item["id"] for item in first.json()["items"] + second.json()["items"]]
        assert ids == [movie["_id"] for movie in expected]
        assert first.json()["total"] == 4
        assert second.json()["page"] == 2

    async def test_camel_case_fields(self, stack: ApiStack) -> None:
        word = token()
        seed_movie(stack, title=word, runningTimeMin=136, imdbRating=8.7)

        response = await stack.client.get("/movies", params={"title": word})

        item = response.json()["items"][0]
        assert item["runningTimeMin"] == 136
        assert item["imdbRating"] == 8.7
        assert item["releaseDate"] == "1999-03-31"

    async def test_cached_until_generation_changes(self, stack: ApiStack) -> None:
        word = token()
        seed_movie(stack, title=f"{word} one")
        first = await stack.client.get("/movies", params={"title": word})

        # Inserted without bumping the generation: the cached page is served.
        stack.database[MOVIES].insert_one(
            {"_id": new_id(), "title": f"{word} two", "version": 1}
        )
        cached = await stack.client.get("/movies", params={"title": word})
        stack.redis.incr(stack.keys.generation(MOVIES))
        fresh = await stack.client.get("/movies", params={"title": word})

        assert first.json()["total"] == 1
        assert cached.content == first.content
        assert fresh.json()["total"] == 2

    async def test_cache_entry_expires_within_a_minute(self, stack: ApiStack) -> None:
        word = token()
        seed_movie(stack, title=word)
        await stack.client.get("/movies", params={"title": word})

        generation = int(stack.redis.get(stack.keys.generation(MOVIES)) or 0)
        pattern = stack.keys.query(MOVIES, generation, "*")
        cached_keys = [
            key for key in stack.redis.scan_iter(match=pattern) if word.encode() in key
        ]

        assert len(cached_keys) == 1
        assert 0 < stack.redis.ttl(cached_keys[0]) <= 60

    async def test_concurrent_misses_run_one_query(
        self, stack: ApiStack, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        word = token()
        seed_movie(stack, title=f"Stampede {word}")
        calls = 0
        original = MovieQuery.run

        async def counted(query: MovieQuery, resources: Any) -> bytes:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.2)  # a slow query, so the requests overlap
            return await original(query, resources)

        monkeypatch.setattr(MovieQuery, "run", counted)

        responses = await asyncio.gather(
            *(stack.client.get("/movies", params={"title": word}) for _ in range(20))
        )

        assert {response.status_code for response in responses} == {200}
        assert len({response.content for response in responses}) == 1
        assert calls == 1


class TestGetMovie:
    async def test_redis_bytes_served_as_they_are(self, stack: ApiStack) -> None:
        movie_id = new_id()
        cached = b'{"id":"%s","title":"From Redis"}' % movie_id.encode()
        stack.redis.set(stack.keys.movie(movie_id), cached)

        response = await stack.client.get(f"/movies/{movie_id}")

        assert response.status_code == 200
        assert response.content == cached
        assert response.headers["content-type"] == "application/json"

    async def test_mongodb_when_redis_misses(self, stack: ApiStack) -> None:
        movie = seed_movie(stack, title="Only in MongoDB")

        response = await stack.client.get(f"/movies/{movie['_id']}")

        assert response.status_code == 200
        assert response.json()["title"] == "Only in MongoDB"
        assert response.json()["mpaaRating"] == "PG"

    async def test_unknown_movie_is_404(self, stack: ApiStack) -> None:
        movie_id = new_id()

        response = await stack.client.get(f"/movies/{movie_id}")

        assert response.status_code == 404
        assert response.json() == {"detail": f"movie {movie_id} not found"}

    async def test_uppercase_uuid_is_normalised(self, stack: ApiStack) -> None:
        movie = seed_movie(stack, title="Upper")

        response = await stack.client.get(f"/movies/{movie['_id'].upper()}")

        assert response.status_code == 200
        assert response.json()["id"] == movie["_id"]


class TestListShowtimes:
    async def test_filters_by_movie_and_sorts_by_start(self, stack: ApiStack) -> None:
        movie_id = new_id()
        late = seed_showtime(stack, movieId=movie_id, startsAt=at(2031, 5, 1, 21))
        early = seed_showtime(stack, movieId=movie_id, startsAt=at(2031, 5, 1, 15))
        seed_showtime(stack)

        response = await stack.client.get("/showtimes", params={"movieId": movie_id})

        assert response.status_code == 200
        assert [s["id"] for s in response.json()] == [early["_id"], late["_id"]]

    async def test_filters_by_local_date(self, stack: ApiStack) -> None:
        movie_id = new_id()
        seed_showtime(stack, movieId=movie_id, localDate="2031-05-01")
        second = seed_showtime(
            stack, movieId=movie_id, localDate="2031-05-02", startsAt=at(2031, 5, 2, 18)
        )

        response = await stack.client.get(
            "/showtimes", params={"movieId": movie_id, "date": "2031-05-02"}
        )

        assert [s["id"] for s in response.json()] == [second["_id"]]

    async def test_view_counts_free_seats(self, stack: ApiStack) -> None:
        movie_id = new_id()
        seed_showtime(stack, movieId=movie_id, sold={"A1": new_id(), "A2": new_id()})

        response = await stack.client.get("/showtimes", params={"movieId": movie_id})

        view = response.json()[0]
        assert view["capacity"] == 37
        assert view["available"] == 35
        assert view["startsAt"] == "2031-05-01T18:00:00Z"
        assert view["auditoriumName"] == "Hall 1"

    async def test_cached_until_generation_changes(self, stack: ApiStack) -> None:
        movie_id = new_id()
        seed_showtime(stack, movieId=movie_id)
        first = await stack.client.get("/showtimes", params={"movieId": movie_id})

        document = showtime_document(movie_id)
        stack.database[SHOWTIMES].insert_one(document)
        cached = await stack.client.get("/showtimes", params={"movieId": movie_id})
        stack.redis.incr(stack.keys.generation(SHOWTIMES))
        fresh = await stack.client.get("/showtimes", params={"movieId": movie_id})

        assert len(first.json()) == 1
        assert cached.content == first.content
        assert len(fresh.json()) == 2

    @pytest.mark.parametrize(
        "params",
        [
            {"date": "2031-02-30"},
            {"date": "01-05-2031"},
            {"date": "2031-5-1"},
            {"movieId": "42"},
        ],
    )
    async def test_invalid_filter_is_422(
        self, stack: ApiStack, params: dict[str, str]
    ) -> None:
        response = await stack.client.get("/showtimes", params=params)

        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", next(iter(params))]
        assert error["input"] == next(iter(params.values()))


class TestGetShowtime:
    async def test_found(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)

        response = await stack.client.get(f"/showtimes/{showtime['_id']}")

        assert response.status_code == 200
        assert response.json()["id"] == showtime["_id"]
        assert response.json()["localDate"] == "2031-05-01"

    async def test_unknown_is_404(self, stack: ApiStack) -> None:
        showtime_id = new_id()

        response = await stack.client.get(f"/showtimes/{showtime_id}")

        assert response.status_code == 404
        assert response.json() == {"detail": f"showtime {showtime_id} not found"}


class TestSeatMap:
    async def test_redis_bytes_served_as_they_are(self, stack: ApiStack) -> None:
        showtime_id = new_id()
        cached = b'{"showtimeId":"%s","rows":[]}' % showtime_id.encode()
        stack.redis.set(stack.keys.seat_map(showtime_id), cached)

        response = await stack.client.get(f"/showtimes/{showtime_id}/seats")

        assert response.status_code == 200
        assert response.content == cached
        assert response.headers["content-type"] == "application/json"

    async def test_built_from_mongodb_and_not_cached(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack, sold={"A2": new_id()})

        response = await stack.client.get(f"/showtimes/{showtime['_id']}/seats")

        assert response.status_code == 200
        seat_map = response.json()
        states = {
            position["seat"]: position["state"]
            for row in seat_map["rows"]
            for position in row["positions"]
        }
        assert states["A1"] == "free"
        assert states["A2"] == "sold"
        assert states["B5"] == "none"
        assert seat_map["available"] == 36
        assert stack.redis.get(stack.keys.seat_map(showtime["_id"])) is None

    async def test_unknown_is_404(self, stack: ApiStack) -> None:
        response = await stack.client.get(f"/showtimes/{new_id()}/seats")

        assert response.status_code == 404


class TestGetTicket:
    async def test_redis_ticket_served(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        ticket = TicketView(
            bookingId=new_id(),
            status="confirmed",
            showtimeId=showtime["_id"],
            seats=["A1"],
        )
        stack.redis.set(stack.keys.ticket(ticket.booking_id), encode(ticket))

        response = await stack.client.get(f"/tickets/{ticket.booking_id}")

        assert response.status_code == 200
        assert response.content == encode(ticket)

    async def test_mongodb_when_redis_misses(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        booking = seed_booking(
            stack,
            showtime,
            "rejected",
            reason="seats not available: A1",
            reasonCode="seats_unavailable",
            rejectedSeats=["A1"],
        )

        response = await stack.client.get(f"/tickets/{booking['_id']}")

        assert response.status_code == 200
        ticket = response.json()
        assert ticket["bookingId"] == booking["_id"]
        assert ticket["status"] == "rejected"
        assert ticket["rejectedSeats"] == ["A1"]
        assert ticket["reasonCode"] == "seats_unavailable"

    async def test_pending_in_redis_loses_to_mongodb(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        booking = seed_booking(stack, showtime, "confirmed")
        pending = TicketView(
            bookingId=booking["_id"],
            status="pending",
            showtimeId=showtime["_id"],
            seats=["A1", "A2"],
        )
        stack.redis.set(stack.keys.ticket(booking["_id"]), encode(pending))

        response = await stack.client.get(f"/tickets/{booking['_id']}")

        assert response.json()["status"] == "confirmed"

    async def test_unknown_is_404(self, stack: ApiStack) -> None:
        booking_id = new_id()

        response = await stack.client.get(f"/tickets/{booking_id}")

        assert response.status_code == 404
        assert response.json() == {"detail": f"booking {booking_id} not found"}


class TestHealth:
    async def test_ok_when_every_service_responds(self, stack: ApiStack) -> None:
        response = await stack.client.get("/health")

        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "checks": {"redis": "ok", "mongodb": "ok", "kafka": "ok"},
        }


def at(year: int, month: int, day: int, hour: int) -> datetime:
    """Return an aware UTC datetime on the hour."""
    return datetime(year, month, day, hour, tzinfo=UTC)


def showtime_document(movie_id: str) -> dict[str, object]:
    """Return a showtime document for ``movie_id`` that no helper has inserted."""
    return {
        "_id": new_id(),
        "movieId": movie_id,
        "movieTitle": None,
        "auditoriumId": "hall-2",
        "auditoriumName": "Hall 2",
        "startsAt": at(2031, 6, 1, 20),
        "localDate": "2031-06-01",
        "rows": [["A", "ssss"]],
        "sold": {},
        "capacity": 4,
        "version": 1,
    }
