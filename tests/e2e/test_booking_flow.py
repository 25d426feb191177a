"""Bookings through the whole system: HTTP, Kafka, processor, PostgreSQL, relay,
projector, MongoDB and Redis, on the real 3,201-film catalogue."""

import signal
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import httpx
import pytest

from domain.showtime import Showtime
from infra.adapters.event_store import EventStoreReader, postgres_env
from infra.adapters.settings import Settings
from tests.e2e.conftest import (
    Stack,
    schedule_showtime,
    wait_for,
    wait_for_showtime,
)

pytestmark = pytest.mark.e2e

HALL_1_ROWS = "ABCDEFGHIJKLM"


def book(
    api: str, showtime_id: str, seats: list[str], wait_ms: int = 10_000
) -> httpx.Response:
    """Send one booking with a fresh Idempotency-Key and wait for its outcome."""
    body = {"showtimeId": showtime_id, "seats": seats, "paymentMethod": "card"}
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    return httpx.post(
        f"{api}/book-tickets?wait={wait_ms}", json=body, headers=headers, timeout=30
    )


def seat_states(api: str, showtime_id: str) -> dict[str, str]:
    """Return each seat's state from the API's seat map."""
    seat_map = httpx.get(f"{api}/showtimes/{showtime_id}/seats").json()
    return {p["seat"]: p["state"] for row in seat_map["rows"] for p in row["positions"]}


def stored_events(settings: Settings, showtime_id: str) -> list[object]:
    """Return the showtime's events from the event store."""
    reader = EventStoreReader(env=postgres_env(settings.require("POSTGRES_URL")))
    try:
        return list(reader.repository.event_store.get(UUID(showtime_id)))
    finally:
        reader.close()


def sold_in_store(settings: Settings, showtime_id: str) -> dict[str, str]:
    """Fold the stored events into the seat owners, independently of the aggregate."""
    owners: dict[str, str] = {}
    for event in stored_events(settings, showtime_id):
        if isinstance(event, Showtime.SeatsBooked):
            for seat in event.seats + event.wheelchair_spaces:
                assert seat not in owners, f"{seat} sold twice"
                owners[seat] = event.booking_id
        elif isinstance(event, Showtime.BookingCancelled):
            for seat in event.seats:
                owners.pop(seat)
    return owners


def all_seats_but(keep: str) -> list[list[str]]:
    """Return every Hall 1 seat except ``keep``, in bookings of at most 10 seats."""
    seats = [
        f"{row}{n}" for row in HALL_1_ROWS for n in range(1, 11) if f"{row}{n}" != keep
    ]
    return [seats[i : i + 10] for i in range(0, len(seats), 10)]


class TestConcurrentBooking:
    def test_last_seat_goes_to_one_of_fifty(
        self, stack: Stack, settings: Settings, catalog_movies: list[UUID]
    ) -> None:
        showtime_id = schedule_showtime(settings, catalog_movies[0])
        wait_for_showtime(stack, showtime_id)
        for seats in all_seats_but("D7"):
            assert book(stack.api, showtime_id, seats).status_code == 201

        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(
                pool.map(lambda _: book(stack.api, showtime_id, ["D7"]), range(50))
            )

        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 409: 49}
        for response in responses:
            if response.status_code == 409:
                assert response.json()["rejectedSeats"] == ["D7"]
                assert "D7" in response.json()["reason"]
        wait_for(
            lambda: (
                httpx.get(f"{stack.api}/showtimes/{showtime_id}").json()["available"]
                == 0
            ),
            30,
            "availability did not reach 0",
        )
        d7_sales = [
            e for e in stored_events(settings, showtime_id)
            if isinstance(e, Showtime.SeatsBooked) and "D7" in e.seats
        ]  # fmt: skip
        assert len(d7_sales) == 1

    def test_same_seat_pairs_have_one_winner(
        self, stack: Stack, settings: Settings, catalog_movies: list[UUID]
    ) -> None:
        showtime_id = schedule_showtime(settings, catalog_movies[1], hours=30)
        wait_for_showtime(stack, showtime_id)
        seats = [f"{row}{n}" for row in "ABCDEFGHIJ" for n in range(1, 11)]
        # Two clients for every one of 100 seats, 200 requests, all at once.
        requests = [[seat] for seat in seats for _ in range(2)]

        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(
                pool.map(lambda s: book(stack.api, showtime_id, s), requests)
            )

        winners = Counter(
            r.json()["seats"][0] for r in responses if r.status_code == 201
        )
        losers = [r.json() for r in responses if r.status_code == 409]
        assert winners == Counter(seats)
        assert len(losers) == len(seats)
        assert all(ticket["rejectedSeats"] == ticket["seats"] for ticket in losers)
        owners = {
            r.json()["seats"][0]: r.json()["bookingId"]
            for r in responses
            if r.status_code == 201
        }
        assert sold_in_store(settings, showtime_id) == owners

        def seat_map_agrees() -> bool:
            states = seat_states(stack.api, showtime_id)
            return {seat for seat, state in states.items() if state == "sold"} == set(
                owners
            )

        wait_for(
            seat_map_agrees, 30, "the seat map did not match the confirmed bookings"
        )
        for response in responses:
            ticket = response.json()
            polled = httpx.get(f"{stack.api}/tickets/{ticket['bookingId']}").json()
            assert polled["status"] == ticket["status"]

    def test_overlapping_requests_sell_each_seat_once(
        self, stack: Stack, settings: Settings, catalog_movies: list[UUID]
    ) -> None:
        showtime_id = schedule_showtime(settings, catalog_movies[4], hours=35)
        wait_for_showtime(stack, showtime_id)
        requests = [[f"E{n}", f"E{n + 1}"] for n in range(1, 10)]
        requests += [[f"E{n}", f"E{n + 1}", f"E{n + 2}"] for n in range(1, 9)]

        with ThreadPoolExecutor(max_workers=17) as pool:
            responses = list(
                pool.map(lambda s: book(stack.api, showtime_id, s), requests)
            )

        confirmed = [r.json() for r in responses if r.status_code == 201]
        rejected = [r.json() for r in responses if r.status_code == 409]
        assert len(confirmed) + len(rejected) == len(requests)
        owners: dict[str, str] = {}
        for ticket in confirmed:
            for seat in ticket["seats"]:
                assert seat not in owners, f"{seat} confirmed twice"
                owners[seat] = ticket["bookingId"]
        for ticket in rejected:
            assert ticket["rejectedSeats"]
            assert set(ticket["rejectedSeats"]) <= set(owners)
        assert sold_in_store(settings, showtime_id) == owners


class TestProcessorRestart:
    def test_killed_processor_loses_and_repeats_nothing(
        self, stack: Stack, settings: Settings, catalog_movies: list[UUID]
    ) -> None:
        showtime_id = schedule_showtime(settings, catalog_movies[2], hours=40)
        wait_for_showtime(stack, showtime_id)
        seats = [f"{row}{n}" for row in "GHIJ" for n in range(1, 11)]
        booking_ids: list[str] = []

        def send(seat: str) -> None:
            body = {"showtimeId": showtime_id, "seats": [seat], "paymentMethod": "card"}
            response = httpx.post(f"{stack.api}/book-tickets", json=body, timeout=30)
            assert response.status_code == 202
            booking_ids.append(response.json()["bookingId"])

        for seat in seats[:20]:
            send(seat)
        stack.stop("processor", signal.SIGKILL)
        for seat in seats[20:30]:
            send(seat)
        stack.start("processor")
        for seat in seats[30:]:
            send(seat)

        def all_decided() -> bool:
            return all(ticket_status(stack, b) == "confirmed" for b in booking_ids)

        wait_for(all_decided, 90, "not every booking was confirmed after the restart")
        decisions = Counter(
            e.booking_id for e in stored_events(settings, showtime_id)
            if not isinstance(e, Showtime.Scheduled)
        )  # fmt: skip
        assert sorted(decisions) == sorted(booking_ids)
        assert set(decisions.values()) == {1}
        assert sorted(sold_in_store(settings, showtime_id)) == sorted(seats)

        def caught_up() -> bool:
            lag = httpx.get(f"{stack.api}/lag", timeout=15).json()
            print("lag:", lag)  # shown by pytest when the wait fails
            return lag == {"booking-processor": 0, "projectors": 0}

        wait_for(caught_up, 60, "GET /lag did not return to 0")


def ticket_status(stack: Stack, booking_id: str) -> str:
    """Return a booking's status through the API."""
    response = httpx.get(f"{stack.api}/tickets/{booking_id}")
    return str(response.json().get("status")) if response.status_code == 200 else ""
