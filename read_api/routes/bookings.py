"""Routes that book and cancel tickets, and the ticket a client polls."""

from fastapi import APIRouter
from starlette.responses import Response

from projections.views import TicketView
from read_api.body import BookTicketsBody, CommandAccepted, CommandNotSent
from read_api.booking_commands import book_seats, cancel_booking, command_outcome
from read_api.deps import BookingId, IdempotencyKey, ResourcesDep, WaitMs
from read_api.errors import NotFoundError
from read_api.json_body import StrictJSONRoute
from read_api.read_models import ticket_bytes
from read_api.responses import MONGODB_UNAVAILABLE, error_docs, json_response

router = APIRouter(route_class=StrictJSONRoute, tags=["bookings"])

NOT_SENT = {
    "model": CommandNotSent,
    "description": "Kafka did not acknowledge the command in time, but it may "
    "still have been written. Retry, or poll the Location header.",
}


@router.post(
    "/book-tickets",
    status_code=202,
    response_model=CommandAccepted,
    responses={
        201: {"model": TicketView, "description": "Booked within the wait"},
        409: {"model": TicketView, "description": "Rejected within the wait"},
        **error_docs({413: "The body is larger than API_MAX_BODY_BYTES"}),
        503: NOT_SENT,
    },
)
async def book_tickets(
    body: BookTicketsBody,
    resources: ResourcesDep,
    wait: WaitMs,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Book seats of a showtime, with a 202 response once the command is in Kafka."""
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
    booking_id: BookingId, resources: ResourcesDep, wait: WaitMs
) -> Response:
    """Cancel a confirmed booking, with a 202 response once the command is in Kafka."""
    ticket = await cancel_booking(resources, str(booking_id))
    outcomes = {"cancelled": 200}
    return await command_outcome(
        resources, ticket.booking_id, wait, outcomes, ticket.status
    )
