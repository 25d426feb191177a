"""Checks of the seat lists in a booking request, against the limit and the seat map."""

from collections import Counter, deque
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from domain.seating import SeatProblem, find_seat_problems
from read_api.body import BookTicketsBody
from read_api.deps import ScheduledShowtime
from read_api.errors import validation_error

SEAT_LIST_FIELDS = ("seats", "wheelchairSpaces")


async def check_seat_list_lengths(request: Request) -> None:
    """Raise a 422 error for each seat list longer than MAX_SEATS_PER_BOOKING.

    The booking route runs this dependency before FastAPI validates the body, so a
    list over BookTicketsBody's hard cap of MAX_SEAT_ENTRIES is reported with the
    configured limit, not the cap. It reads the JSON that StrictJSONRoute parsed,
    and leaves bodies that are empty or not objects to the model's validation.
    """
    if not await request.body():
        return
    data = await request.json()
    if not isinstance(data, dict):
        return

    max_seats = request.app.state.settings.MAX_SEATS_PER_BOOKING
    errors: list[dict[str, Any]] = []
    for field in SEAT_LIST_FIELDS:
        entries = data.get(field)
        if isinstance(entries, list) and len(entries) > max_seats:
            msg = (
                f"{len(entries)} entries in {field}, at most {max_seats} seats and "
                "wheelchair spaces allowed in one booking"
            )
            errors.append(
                {
                    "loc": ("body", field),
                    "msg": msg,
                    "type": "too_long",
                    "input": entries,
                }
            )
    if errors:
        raise RequestValidationError(errors)


def check_seat_count(body: BookTicketsBody, max_seats: int) -> None:
    """Raise a 422 error unless the request names 1 to ``max_seats`` distinct ids.

    The limit counts both lists together, so an error for too many ids is located
    at the body and states how many distinct ids each list contains.
    """
    seats = set(body.seats)
    spaces = set(body.wheelchair_spaces)
    count = len(seats | spaces)
    if count == 0:
        msg = "a booking needs at least one seat or wheelchair space"
        raise validation_error(("body", "seats"), msg, body.seats, "too_short")
    if count > max_seats:
        msg = (
            f"{count} seats requested, at most {max_seats} allowed in one booking: "
            f"{len(seats)} in seats and {len(spaces)} in wheelchairSpaces"
        )
        lists = {"seats": body.seats, "wheelchairSpaces": body.wheelchair_spaces}
        raise validation_error(("body",), msg, lists, "too_long")


def check_seats_on_map(showtime: ScheduledShowtime, body: BookTicketsBody) -> None:
    """Raise a 422 error with one entry per seat id this showtime cannot sell."""
    problems = find_seat_problems(showtime.seat_map, body.seats, body.wheelchair_spaces)
    if problems:
        raise RequestValidationError(locate_seat_problems(body, problems))


def locate_seat_problems(
    body: BookTicketsBody, problems: list[SeatProblem]
) -> list[dict[str, object]]:
    """Pair each seat problem with the list entry it is about.

    ``find_seat_problems`` returns problems in request order, and names only the
    seat id. Every repeat of an id has a problem, because it is malformed or a
    duplicate. The first occurrence has one only when the id is bad on its own,
    and that is the case exactly when the id has as many problems as occurrences.
    """
    entries = [("seats", index, seat) for index, seat in enumerate(body.seats)]
    entries += [
        ("wheelchairSpaces", index, seat)
        for index, seat in enumerate(body.wheelchair_spaces)
    ]
    occurrences = Counter(seat for _, _, seat in entries)
    reasons: dict[str, deque[str]] = {}
    for problem in problems:
        reasons.setdefault(problem.seat_id, deque()).append(problem.reason)

    located: list[dict[str, object]] = []
    seen: set[str] = set()
    for field, index, seat in entries:
        first = seat not in seen
        seen.add(seat)
        seat_reasons = reasons.get(seat)
        if not seat_reasons:
            continue
        if first and len(seat_reasons) < occurrences[seat]:
            continue
        located.append(
            {
                "loc": ("body", field, index),
                "msg": seat_reasons.popleft(),
                "type": "seat_invalid",
                "input": seat,
            }
        )
    return located
