"""Routes that book and cancel tickets, and the ticket a client polls."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from infra.adapters.settings import Settings
from projections.views import TicketView
from read_api.body import BookTicketsBody, CommandAccepted, CommandNotSent
from read_api.booking_commands import book_seats, cancel_booking, command_outcome
from read_api.deps import BookingId, IdempotencyKey, ResourcesDep
from read_api.errors import NotFoundError
from read_api.json_body import StrictJSONRoute
from read_api.read_models import ticket_bytes
from read_api.responses import MONGODB_UNAVAILABLE, error_docs, json_response
from read_api.seat_checks import check_seat_list_lengths

NOT_SENT = {
    "model": CommandNotSent,
    "description": "Kafka did not acknowledge the command in time, but it may "
    "still have been written. Retry, or poll the Location header.",
}


def build_router(settings: Settings) -> APIRouter:
    """Build the booking routes, with ``settings.API_MAX_WAIT_MS`` as maximum ``wait``.

    The routes are built for each app, so that the OpenAPI schema states the
    maximum that the app's validation of ``wait`` enforces.
    """
    router = APIRouter(route_class=StrictJSONRoute, tags=["bookings"])
    wait_query = Query(
        ge=0,
        le=settings.API_MAX_WAIT_MS,
        description="Milliseconds to wait for the outcome before the 202 response",
    )

    @router.post(
        "/book-tickets",
        status_code=202,
        response_model=CommandAccepted,
        responses={
            201: {"model": TicketView, "description": "Booked within the wait"},
            409: {"model": TicketView, "description": "Rejected within the wait"},
            **error_docs(
                {
                    413: "The body is larger than API_MAX_BODY_BYTES",
                    415: "The body is sent with a Content-Type other than JSON",
                }
            ),
            503: NOT_SENT,
        },
        dependencies=[Depends(check_seat_list_lengths)],
    )
    async def book_tickets(
        body: BookTicketsBody,
        resources: ResourcesDep,
        wait: Annotated[int, wait_query] = 0,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Book seats of a showtime, with a 202 response once Kafka has the command."""
        booking_id = await book_seats(resources, body, idempotency_key)
        outcomes = {"confirmed": 201, "rejected": 409}
        return await command_outcome(resources, booking_id, wait, outcomes, "pending")

    @router.get(
        "/tickets/{bookingId}",
        response_model=TicketView,
        responses=error_docs({404: "No booking has this id", 503: MONGODB_UNAVAILABLE}),
    )
    async def get_ticket(booking_id: BookingId, resources: ResourcesDep) -> Response:
        """Return a booking's ticket: pending, confirmed, rejected or cancelled."""
        body = await ticket_bytes(resources, str(booking_id))
        if body is None:
            raise NotFoundError(f"booking {booking_id} not found")
        return json_response(body)

    @router.post(
        "/tickets/{bookingId}/cancel",
        status_code=202,
        response_model=CommandAccepted,
        responses={
            200: {"model": TicketView, "description": "Cancelled within the wait"},
            **error_docs(
                {
                    404: "No booking has this id",
                    409: "The booking is pending, rejected or cancelled already",
                }
            ),
            503: NOT_SENT,
        },
    )
    async def cancel_ticket(
        booking_id: BookingId,
        resources: ResourcesDep,
        wait: Annotated[int, wait_query] = 0,
    ) -> Response:
        """Cancel a confirmed booking, with a 202 response once Kafka has the command.

        A request made after the cancellation is applied gets 409. Concurrent
        requests find the booking still confirmed, because the first cancellation
        is not yet applied. So each of them sends a CancelBooking command and gets
        the same response as the first: 202, or 200 with the cancelled ticket when
        the outcome arrives within ``wait``. The processor applies the first
        command and skips the others, so every caller sees the booking cancelled.
        """
        ticket = await cancel_booking(resources, str(booking_id))
        outcomes = {"cancelled": 200}
        return await command_outcome(
            resources, ticket.booking_id, wait, outcomes, ticket.status
        )

    return router
