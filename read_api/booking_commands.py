"""Intake of booking commands: checks, idempotency, the send to Kafka and the wait.

Every check runs before anything is sent, so a request that fails one leaves no
command on the topic. The processor decides the command later; the API only
promises that Kafka acknowledged it.
"""

import asyncio
import logging
from collections.abc import Collection
from datetime import UTC, datetime

from redis.exceptions import RedisError
from starlette.responses import Response

from domain.commands import BookSeats, CancelBooking, Command, encode_command
from infra.adapters.kafka import (
    COMMANDS_TOPIC,
    SendFailedError,
    SendTimedOutError,
    send_with_deadline,
)
from projections.views import TicketStatus, TicketView, encode
from read_api.body import BookTicketsBody, CommandAccepted
from read_api.deps import Resources, ScheduledShowtime
from read_api.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    validation_error,
)
from read_api.idempotency import (
    booking_id_for,
    claim_idempotency_key,
    request_fingerprint,
)
from read_api.read_models import find_scheduled_showtime, find_ticket, redis_failures
from read_api.responses import json_response
from read_api.seat_checks import check_seat_count, check_seats_on_map

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.025
# While waiting, a pending ticket in Redis is checked against MongoDB on every
# this-many polls (and on the last), in case the projector's Redis write was lost.
STORE_POLL_EVERY = 8


async def book_seats(
    resources: Resources, body: BookTicketsBody, idempotency_key: str | None
) -> str:
    """Check a booking request and send its BookSeats command, returning the booking id.

    Raises RequestValidationError (422) for a request that can never succeed, and
    ServiceUnavailableError (503) when MongoDB or Kafka fails.
    """
    check_seat_count(body, resources.settings.MAX_SEATS_PER_BOOKING)
    showtime_id = str(body.showtime_id)
    showtime = await find_scheduled_showtime(resources, showtime_id)
    if showtime is None:
        msg = f"showtime {showtime_id} not found"
        raise validation_error(("body", "showtimeId"), msg, showtime_id, "not_found")
    if showtime.starts_at <= datetime.now(UTC):
        # The processor rejects it too; rejecting it here saves the client a poll.
        start = showtime.starts_at.isoformat()
        msg = f"showtime {showtime_id} started at {start}: bookings are closed"
        raise validation_error(("body", "showtimeId"), msg, showtime_id, "started")
    check_seats_on_map(showtime, body)

    fingerprint = request_fingerprint(body)
    booking_id = booking_id_for(idempotency_key, fingerprint)
    if idempotency_key is not None:
        await claim_idempotency_key(resources, idempotency_key, booking_id, fingerprint)
    await store_pending_ticket(resources, booking_id, body, showtime)

    command = BookSeats(
        booking_id=booking_id,
        showtime_id=showtime_id,
        seats=body.seats,
        payment_method=body.payment_method,
        wheelchair_spaces=body.wheelchair_spaces,
        idempotency_key=idempotency_key,
    )
    if idempotency_key is not None:
        retry_hint = "Retry with the same Idempotency-Key, or poll Location."
    else:
        retry_hint = (
            "Poll Location to learn the outcome. A retry without an "
            "Idempotency-Key may book twice, so send one next time."
        )
    await send_command(resources, command, retry_hint)
    return booking_id


async def cancel_booking(resources: Resources, booking_id: str) -> TicketView:
    """Send a CancelBooking command for a confirmed booking, returning its ticket.

    Raises NotFoundError (404) for an unknown booking and ConflictError (409) for
    one that is not confirmed.
    """
    ticket = await find_ticket(resources, booking_id)
    if ticket is None:
        raise NotFoundError(f"booking {booking_id} not found")
    if ticket.status == "pending":
        msg = f"booking {booking_id} is pending: cancel it once it is confirmed"
        raise ConflictError(msg, extra={"status": ticket.status})
    if ticket.status == "rejected":
        msg = f"booking {booking_id} is rejected: it holds no seats to cancel"
        raise ConflictError(msg, extra={"status": ticket.status})
    if ticket.status == "cancelled":
        msg = f"booking {booking_id} is cancelled already"
        raise ConflictError(msg, extra={"status": ticket.status})

    command = CancelBooking(booking_id=booking_id, showtime_id=ticket.showtime_id)
    await send_command(resources, command, "Retry the cancellation, or poll Location.")
    return ticket


async def store_pending_ticket(
    resources: Resources,
    booking_id: str,
    body: BookTicketsBody,
    showtime: ScheduledShowtime,
) -> None:
    """Store a pending ticket in Redis, unless the booking already has a ticket there.

    The write uses NX because the projector may already have stored the outcome of
    an earlier send of the same booking. A Redis failure is only logged: the
    ticket then appears once the projector stores the outcome.
    """
    # NOTE: when the send to Kafka fails and the client never retries, this
    # pending ticket stays until PENDING_TICKET_TTL_S passes, although the
    # command may never have reached Kafka.
    ticket = TicketView(
        bookingId=booking_id,
        status="pending",
        showtimeId=showtime.showtime_id,
        seats=body.seats,
        wheelchairSpaces=body.wheelchair_spaces,
        paymentMethod=body.payment_method,
        movieId=showtime.movie_id,
        startsAt=showtime.starts_at,
        auditoriumName=showtime.auditorium_name,
        updatedAt=datetime.now(UTC),
    )
    key = resources.keys.ticket(booking_id)
    ttl_s = resources.settings.PENDING_TICKET_TTL_S
    try:
        await resources.redis.set(key, encode(ticket), nx=True, ex=ttl_s)
    except RedisError as error:
        redis_failures.log(logging.WARNING, f"SET pending ticket {key}", error)


async def send_command(resources: Resources, command: Command, retry_hint: str) -> None:
    """Send a command keyed by its showtime id, raising a 503 error when the send fails.

    A send that failed or timed out may still have been written, so the 503 body
    states how to retry safely, and its Location header where to poll.
    """
    settings = resources.settings
    try:
        await send_with_deadline(
            resources.producer,
            settings.topic(COMMANDS_TOPIC),
            key=command.showtime_id.encode(),
            value=encode_command(command),
            deadline_s=settings.KAFKA_SEND_TIMEOUT_S,
        )
    except (SendTimedOutError, SendFailedError) as error:
        command_name = type(command).__name__
        logger.error(
            "%s for booking %s of showtime %s may not have reached Kafka: %s",
            command_name,
            command.booking_id,
            command.showtime_id,
            error,
        )
        location = ticket_location(command.booking_id)
        detail = (
            f"{command_name} for booking {command.booking_id} may or may not have "
            f"been accepted. {retry_hint}"
        )
        raise ServiceUnavailableError(
            detail,
            extra={"bookingId": command.booking_id},
            headers={"Location": location, "Retry-After": "1"},
        ) from error

    logger.debug(
        "sent %s for booking %s of showtime %s",
        type(command).__name__,
        command.booking_id,
        command.showtime_id,
    )


async def command_outcome(
    resources: Resources,
    booking_id: str,
    wait_ms: int,
    final_statuses: dict[str, int],
    status_now: TicketStatus,
) -> Response:
    """Build the response to an accepted command, waiting up to ``wait_ms`` for it.

    When the ticket reaches a status in ``final_statuses`` within the wait, the
    response is the ticket, with that status's HTTP code. Otherwise it is a 202
    with the ticket's location and ``status_now``.
    """
    location = ticket_location(booking_id)
    headers = {"Location": location}
    if wait_ms > 0:
        ticket = await wait_for_ticket(resources, booking_id, wait_ms, final_statuses)
        if ticket is not None:
            status_code = final_statuses[ticket.status]
            return json_response(encode(ticket), status_code, headers)

    accepted = CommandAccepted(
        bookingId=booking_id, status=status_now, location=location
    )
    return json_response(encode(accepted), 202, headers)


async def wait_for_ticket(
    resources: Resources,
    booking_id: str,
    wait_ms: int,
    final_statuses: Collection[str],
) -> TicketView | None:
    """Poll a booking's ticket until its status is final, or None when time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms / 1000
    polls = 0
    while True:
        remaining = deadline - loop.time()
        last = remaining <= POLL_INTERVAL_S
        check_store = last or polls % STORE_POLL_EVERY == STORE_POLL_EVERY - 1
        try:
            ticket = await find_ticket(resources, booking_id, check_store)
        except ServiceUnavailableError:
            # Logged where it was raised. The command is sent, so keep waiting.
            ticket = None
        if ticket is not None and ticket.status in final_statuses:
            return ticket
        if last:
            return None

        await asyncio.sleep(POLL_INTERVAL_S)
        polls += 1


def ticket_location(booking_id: str) -> str:
    """Return the path where a booking's ticket can be polled."""
    return f"/tickets/{booking_id}"
