"""Booking and cancelling through the API: commands on the topic, waits, retries."""

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from domain.commands import BookSeats, CancelBooking
from infra.runtime import embedded
from projections.views import BOOKINGS, TicketView, encode
from read_api.body import BookTicketsBody
from read_api.idempotency import booking_id_for, request_fingerprint
from tests.integration.test_api_support import (
    ApiStack,
    booking_body,
    command_end_offsets,
    commands_since,
    new_id,
    open_stack,
    seed_booking,
    seed_showtime,
)

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(service_urls: dict[str, str]) -> AsyncIterator[ApiStack]:
    """Run one API for the module on a namespace of its own."""
    async with open_stack(service_urls) as running:
        yield running


def expected_booking_id(body: dict[str, object], key: str) -> str:
    """Return the booking id the API derives for ``body`` sent with ``key``."""
    return booking_id_for(
        key, request_fingerprint(BookTicketsBody.model_validate(body))
    )


async def store_ticket_later(
    stack: ApiStack,
    booking_id: str,
    status: str,
    delay_s: float = 0.2,
    **fields: object,
) -> None:
    """Write a decided ticket to Redis after ``delay_s``, as the projector would."""
    await asyncio.sleep(delay_s)
    ticket = json.loads(stack.redis.get(stack.keys.ticket(booking_id)) or b"{}")
    ticket.update({"status": status, **fields})
    stack.redis.set(stack.keys.ticket(booking_id), json.dumps(ticket))


class TestBookTickets:
    async def test_accepted_command_is_on_the_topic(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        before = await command_end_offsets(stack.settings)

        response = await stack.client.post(
            "/book-tickets",
            json=booking_body(showtime["_id"], "A1", "A2", wheelchairSpaces=["W1"]),
        )

        assert response.status_code == 202
        accepted = response.json()
        booking_id = accepted["bookingId"]
        assert accepted == {
            "bookingId": booking_id,
            "status": "pending",
            "location": f"/tickets/{booking_id}",
        }
        assert response.headers["location"] == f"/tickets/{booking_id}"
        commands = await commands_since(stack.settings, before)
        assert commands == [
            BookSeats(
                booking_id=booking_id,
                showtime_id=showtime["_id"],
                seats=["A1", "A2"],
                payment_method="card",
                wheelchair_spaces=["W1"],
                idempotency_key=None,
            )
        ]

    async def test_command_keyed_by_showtime(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        before = await command_end_offsets(stack.settings)

        for seat in ("K1", "K2", "K3"):
            body = booking_body(showtime["_id"], seat)
            response = await stack.client.post("/book-tickets", json=body)
            assert response.status_code == 202

        after = await command_end_offsets(stack.settings)
        grown = [p for p in after if after[p] > before[p]]
        assert len(grown) == 1
        assert after[grown[0]] - before[grown[0]] == 3

    async def test_pending_ticket_readable_at_once(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        body = booking_body(showtime["_id"], "A3")

        booked = await stack.client.post("/book-tickets", json=body)
        ticket = await stack.client.get(booked.headers["location"])

        assert ticket.status_code == 200
        assert ticket.json()["status"] == "pending"
        assert ticket.json()["seats"] == ["A3"]
        assert ticket.json()["auditoriumName"] == "Hall 1"
        ttl = stack.redis.ttl(stack.keys.ticket(booked.json()["bookingId"]))
        assert 0 < ttl <= stack.settings.PENDING_TICKET_TTL_S

    async def test_pending_ticket_never_overwrites_outcome(
        self, stack: ApiStack
    ) -> None:
        showtime = seed_showtime(stack)
        body = booking_body(showtime["_id"], "A4")
        key = f"outcome-{new_id()}"
        booking_id = expected_booking_id(body, key)
        confirmed = TicketView(
            bookingId=booking_id,
            status="confirmed",
            showtimeId=showtime["_id"],
            seats=["A4"],
        )
        stack.redis.set(stack.keys.ticket(booking_id), encode(confirmed))

        response = await stack.client.post(
            "/book-tickets", json=body, headers={"Idempotency-Key": key}
        )

        assert response.status_code == 202
        stored = json.loads(stack.redis.get(stack.keys.ticket(booking_id)) or b"{}")
        assert stored["status"] == "confirmed"


class TestIdempotency:
    async def test_same_key_gives_same_booking(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        body = booking_body(showtime["_id"], "B1", "B2")
        headers = {"Idempotency-Key": f"retry-{new_id()}"}
        before = await command_end_offsets(stack.settings)

        first = await stack.client.post("/book-tickets", json=body, headers=headers)
        second = await stack.client.post("/book-tickets", json=body, headers=headers)

        assert first.status_code == 202
        assert second.status_code == 202
        assert first.json()["bookingId"] == second.json()["bookingId"]
        commands = await commands_since(stack.settings, before)
        # Sent again on purpose, because the first send may have failed. The
        # processor drops the repeat by booking id.
        assert [c.booking_id for c in commands] == [first.json()["bookingId"]] * 2
        assert {c.idempotency_key for c in commands} == {headers["Idempotency-Key"]}

    async def test_same_seats_in_another_order_are_the_same(
        self, stack: ApiStack
    ) -> None:
        showtime = seed_showtime(stack)
        headers = {"Idempotency-Key": f"order-{new_id()}"}

        first = await stack.client.post(
            "/book-tickets",
            json=booking_body(showtime["_id"], "B1", "B2"),
            headers=headers,
        )
        second = await stack.client.post(
            "/book-tickets",
            json=booking_body(showtime["_id"], "B2", "B1"),
            headers=headers,
        )

        assert second.status_code == 202
        assert first.json()["bookingId"] == second.json()["bookingId"]

    async def test_same_key_other_request_is_422(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        key = f"reuse-{new_id()}"
        headers = {"Idempotency-Key": key}
        first = await stack.client.post(
            "/book-tickets", json=booking_body(showtime["_id"], "B1"), headers=headers
        )
        before = await command_end_offsets(stack.settings)

        second = await stack.client.post(
            "/book-tickets", json=booking_body(showtime["_id"], "B3"), headers=headers
        )

        assert first.status_code == 202
        assert second.status_code == 422
        [error] = second.json()["detail"]
        assert error["loc"] == ["header", "Idempotency-Key"]
        assert (
            f"Idempotency-Key {key} was already used for a different request"
            in error["msg"]
        )
        assert await command_end_offsets(stack.settings) == before

    async def test_no_key_gives_new_booking_each_time(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        body = booking_body(showtime["_id"], "B6")

        first = await stack.client.post("/book-tickets", json=body)
        second = await stack.client.post("/book-tickets", json=body)

        assert first.json()["bookingId"] != second.json()["bookingId"]

    async def test_key_record_expires(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        key = f"ttl-{new_id()}"

        await stack.client.post(
            "/book-tickets",
            json=booking_body(showtime["_id"], "B7"),
            headers={"Idempotency-Key": key},
        )

        ttl = stack.redis.ttl(stack.keys.idempotency(key))
        assert 0 < ttl <= stack.settings.IDEMPOTENCY_TTL_S


class TestWaitForOutcome:
    async def test_confirmed_within_wait_is_201(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        body = booking_body(showtime["_id"], "K5")
        key = f"wait-{new_id()}"
        booking_id = expected_booking_id(body, key)

        decide = asyncio.create_task(store_ticket_later(stack, booking_id, "confirmed"))
        response = await stack.client.post(
            "/book-tickets",
            json=body,
            params={"wait": 2_000},
            headers={"Idempotency-Key": key},
        )
        await decide

        assert response.status_code == 201
        assert response.json()["status"] == "confirmed"
        assert response.json()["bookingId"] == booking_id
        assert response.headers["location"] == f"/tickets/{booking_id}"

    async def test_rejected_within_wait_is_409(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        body = booking_body(showtime["_id"], "K6")
        key = f"wait-{new_id()}"
        booking_id = expected_booking_id(body, key)

        decide = asyncio.create_task(
            store_ticket_later(
                stack,
                booking_id,
                "rejected",
                reason="seats not available: K6",
                reasonCode="seats_unavailable",
                rejectedSeats=["K6"],
            )
        )
        response = await stack.client.post(
            "/book-tickets",
            json=body,
            params={"wait": 2_000},
            headers={"Idempotency-Key": key},
        )
        await decide

        assert response.status_code == 409
        assert response.json()["status"] == "rejected"
        assert response.json()["rejectedSeats"] == ["K6"]
        assert "K6" in response.json()["reason"]

    async def test_outcome_found_in_mongodb(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        body = booking_body(showtime["_id"], "A1", "A2")
        key = f"wait-{new_id()}"
        booking_id = expected_booking_id(body, key)

        async def store_in_mongodb() -> None:
            await asyncio.sleep(0.1)
            seed_booking(stack, showtime, "confirmed", _id=booking_id)

        decide = asyncio.create_task(store_in_mongodb())
        response = await stack.client.post(
            "/book-tickets",
            json=body,
            params={"wait": 2_000},
            headers={"Idempotency-Key": key},
        )
        await decide

        assert response.status_code == 201
        assert response.json()["status"] == "confirmed"

    async def test_still_pending_after_wait_is_202(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        loop = asyncio.get_running_loop()
        started = loop.time()

        response = await stack.client.post(
            "/book-tickets",
            json=booking_body(showtime["_id"], "K7"),
            params={"wait": 300},
        )

        assert response.status_code == 202
        assert response.json()["status"] == "pending"
        assert 0.25 <= loop.time() - started < 2.0

    async def test_wait_over_server_limit_is_422(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        limit = stack.settings.API_MAX_WAIT_MS
        before = await command_end_offsets(stack.settings)

        response = await stack.client.post(
            "/book-tickets",
            json=booking_body(showtime["_id"], "K8"),
            params={"wait": limit + 1},
        )

        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", "wait"]
        assert error["input"] == str(limit + 1)
        assert f"less than or equal to {limit}" in error["msg"]
        assert await command_end_offsets(stack.settings) == before

    @pytest.mark.parametrize("path", ["/book-tickets", "/tickets/{bookingId}/cancel"])
    async def test_schema_shows_configured_wait_limit(
        self, stack: ApiStack, path: str
    ) -> None:
        schema = (await stack.client.get("/openapi.json")).json()

        operation = schema["paths"][path]["post"]
        [wait] = [p for p in operation["parameters"] if p["name"] == "wait"]
        assert wait["schema"]["maximum"] == stack.settings.API_MAX_WAIT_MS
        assert wait["schema"]["minimum"] == 0


class TestCancel:
    async def test_confirmed_booking_cancel_is_sent(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        booking = seed_booking(stack, showtime, "confirmed")
        before = await command_end_offsets(stack.settings)

        response = await stack.client.post(f"/tickets/{booking['_id']}/cancel")

        assert response.status_code == 202
        assert response.headers["location"] == f"/tickets/{booking['_id']}"
        assert response.json()["status"] == "confirmed"
        commands = await commands_since(stack.settings, before)
        assert commands == [
            CancelBooking(booking_id=booking["_id"], showtime_id=showtime["_id"])
        ]

    @pytest.mark.parametrize("status", ["rejected", "cancelled"])
    async def test_undecidable_status_is_409(
        self, stack: ApiStack, status: str
    ) -> None:
        showtime = seed_showtime(stack)
        booking = seed_booking(stack, showtime, status)
        before = await command_end_offsets(stack.settings)

        response = await stack.client.post(f"/tickets/{booking['_id']}/cancel")

        assert response.status_code == 409
        assert status in response.json()["detail"]
        assert response.json()["status"] == status
        assert await command_end_offsets(stack.settings) == before

    async def test_pending_booking_is_409(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        booked = await stack.client.post(
            "/book-tickets", json=booking_body(showtime["_id"], "K9")
        )
        before = await command_end_offsets(stack.settings)

        response = await stack.client.post(f"{booked.headers['location']}/cancel")

        assert response.status_code == 409
        assert "pending" in response.json()["detail"]
        assert await command_end_offsets(stack.settings) == before

    async def test_unknown_booking_is_404(self, stack: ApiStack) -> None:
        booking_id = new_id()

        response = await stack.client.post(f"/tickets/{booking_id}/cancel")

        assert response.status_code == 404
        assert response.json() == {"detail": f"booking {booking_id} not found"}

    @pytest.mark.parametrize("content_type", ["text/plain", None])
    async def test_cancel_ignores_request_body(
        self, stack: ApiStack, content_type: str | None
    ) -> None:
        showtime = seed_showtime(stack)
        booking = seed_booking(stack, showtime, "confirmed")
        headers = {"content-type": content_type} if content_type else {}

        response = await stack.client.post(
            f"/tickets/{booking['_id']}/cancel", content=b"please", headers=headers
        )

        assert response.status_code == 202

    async def test_schema_states_concurrent_cancel_outcome(
        self, stack: ApiStack
    ) -> None:
        schema = (await stack.client.get("/openapi.json")).json()

        description = schema["paths"]["/tickets/{bookingId}/cancel"]["post"][
            "description"
        ]
        assert "concurrent" in description.lower()
        assert "409" in description

    async def test_cancelled_within_wait_is_200(self, stack: ApiStack) -> None:
        showtime = seed_showtime(stack)
        booking = seed_booking(stack, showtime, "confirmed")

        async def cancel_in_mongodb() -> None:
            await asyncio.sleep(0.1)
            stack.database[BOOKINGS].update_one(
                {"_id": booking["_id"]}, {"$set": {"status": "cancelled"}}
            )

        decide = asyncio.create_task(cancel_in_mongodb())
        response = await stack.client.post(
            f"/tickets/{booking['_id']}/cancel", params={"wait": 2_000}
        )
        await decide

        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"


class TestBrokerPaused:
    async def test_send_timeout_then_retry(
        self, service_urls: dict[str, str], tmp_path: Path
    ) -> None:
        broker = embedded.start_kafka(tmp_path)
        try:
            urls = {**service_urls, "kafka": broker.url}
            async with open_stack(urls, KAFKA_SEND_TIMEOUT_S=1.0) as stack:
                await self.check_pause_and_retry(stack, broker.process.pid)
        finally:
            broker.stop()

    async def check_pause_and_retry(self, stack: ApiStack, broker_pid: int) -> None:
        showtime = seed_showtime(stack)
        warm_up = await stack.client.post(
            "/book-tickets", json=booking_body(showtime["_id"], "A9")
        )
        assert warm_up.status_code == 202
        body = booking_body(showtime["_id"], "A10")
        headers = {"Idempotency-Key": f"paused-{new_id()}"}
        before = await command_end_offsets(stack.settings)

        os.kill(broker_pid, signal.SIGSTOP)
        try:
            failed = await stack.client.post(
                "/book-tickets", json=body, headers=headers
            )
        finally:
            os.kill(broker_pid, signal.SIGCONT)

        assert failed.status_code == 503
        booking_id = failed.json()["bookingId"]
        assert "may or may not have been accepted" in failed.json()["detail"]
        assert failed.headers["location"] == f"/tickets/{booking_id}"
        assert failed.headers["retry-after"] == "1"
        pending = await stack.client.get(f"/tickets/{booking_id}")
        assert pending.json()["status"] == "pending"

        retried = await retry_until_accepted(stack, body, headers)
        assert retried.json()["bookingId"] == booking_id
        commands = await commands_since(stack.settings, before)
        assert commands
        assert {command.booking_id for command in commands} == {booking_id}


async def retry_until_accepted(
    stack: ApiStack, body: dict[str, object], headers: dict[str, str]
) -> httpx.Response:
    """Retry a booking as a client would after 503, for at most ten attempts."""
    for _ in range(10):
        response = await stack.client.post("/book-tickets", json=body, headers=headers)
        if response.status_code != 503:
            assert response.status_code == 202
            return response
        await asyncio.sleep(float(response.headers["retry-after"]))
    raise AssertionError("the booking was not accepted after ten retries")
