"""Property-based tests of the Showtime aggregate against a reference model.

Hypothesis runs random sequences of decide_booking and cancel_booking on a small
seat map. After every step the aggregate must agree with a plain-dict model, no
seat may be sold twice, every booking id must be decided once, and the events
stored so far must rebuild the same state.
"""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.application import Application
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from domain.errors import BookingAlreadyCancelledError, BookingNotFoundError
from domain.showtime import Showtime

pytestmark = pytest.mark.unit

STARTS_AT = datetime(2025, 3, 14, 19, 30, tzinfo=UTC)
# Every booking is decided an hour before the start.
BEFORE = STARTS_AT - timedelta(hours=1)

# Row A: seats A1 A2 | A3, gap A4, wheelchair space A5.
# Row B: seat B1, wheelchair space B2 | seats B3 B4.
ROWS = [["A", "ss|s.w"], ["B", "sw|ss"]]
STANDARD_SEATS = ["A1", "A2", "A3", "B1", "B3", "B4"]
WHEELCHAIR_SPACES = ["A5", "B2"]
# Ids that no request can book: off the map (Z9, A6), malformed (a1, " A1"), a gap (A4).
UNBOOKABLE_IDS = ["Z9", "a1", " A1", "A4", "A6"]
BOOKING_IDS = [f"b{n}" for n in range(8)]
DECISION_EVENTS = {"SeatsBooked", "BookingRejected"}

seat_requests = st.lists(
    st.sampled_from(STANDARD_SEATS * 6 + WHEELCHAIR_SPACES + UNBOOKABLE_IDS), max_size=4
)
wheelchair_requests = st.lists(
    st.sampled_from(WHEELCHAIR_SPACES * 4 + ["A1", "A4", "Z9"]), max_size=2
)


def expected_rejection(
    seats: list[str], wheelchair_spaces: list[str], max_seats: int, sold: dict[str, str]
) -> str | None:
    """Return the expected rejection code, or None when the booking succeeds."""
    requested = seats + wheelchair_spaces
    distinct = set(requested)
    if not distinct:
        return "invalid_seats"
    if len(distinct) > max_seats:
        return "too_many_seats"

    wrong_kind = [s for s in seats if s not in STANDARD_SEATS]
    wrong_kind += [s for s in wheelchair_spaces if s not in WHEELCHAIR_SPACES]
    if wrong_kind or len(distinct) != len(requested):
        return "invalid_seats"
    if distinct & sold.keys():
        return "seats_unavailable"
    return None


class ShowtimeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        starts_at = STARTS_AT
        self.showtime = Showtime("movie-1", "hall-1", "Hall 1", starts_at, ROWS)
        self.model_sold: dict[str, str] = {}
        self.model_bookings: dict[str, list[str]] = {}
        self.model_decided: set[str] = set()
        self.model_cancelled: set[str] = set()

    @rule(
        booking_id=st.sampled_from(BOOKING_IDS),
        seats=seat_requests,
        wheelchair_spaces=wheelchair_requests,
        max_seats=st.integers(min_value=1, max_value=5),
    )
    def decide_booking(
        self,
        booking_id: str,
        seats: list[str],
        wheelchair_spaces: list[str],
        max_seats: int,
    ) -> None:
        sold_before = dict(self.showtime.sold)
        version_before = self.showtime.version

        if booking_id in self.model_decided:
            with pytest.raises(ValueError, match="already decided"):
                self.showtime.decide_booking(
                    booking_id, seats, wheelchair_spaces, "card", max_seats, now=BEFORE
                )
            assert self.showtime.version == version_before
            assert self.showtime.sold == sold_before
            return

        self.showtime.decide_booking(
            booking_id, seats, wheelchair_spaces, "card", max_seats, now=BEFORE
        )
        decision = self.showtime.pending_events[-1]
        sold_after = self.showtime.sold
        newly_sold = sold_after.keys() - sold_before.keys()

        # All or nothing: the booking takes every requested seat or none, and it never
        # changes the owner of a seat that was sold before.
        assert newly_sold in (set(), set(seats + wheelchair_spaces))
        assert {s: sold_after.get(s) for s in sold_before} == sold_before
        assert self.showtime.version == version_before + 1

        code = expected_rejection(seats, wheelchair_spaces, max_seats, self.model_sold)
        self.model_decided.add(booking_id)
        event(f"decision: {code or 'booked'}")
        if code is None:
            assert type(decision).__name__ == "SeatsBooked"
            self.model_bookings[booking_id] = seats + wheelchair_spaces
            for seat in seats + wheelchair_spaces:
                self.model_sold[seat] = booking_id
        else:
            assert type(decision).__name__ == "BookingRejected"
            assert decision.code == code
        if code == "seats_unavailable":
            requested = seats + wheelchair_spaces
            already_sold = [s for s in requested if s in self.model_sold]
            assert decision.rejected_seats == already_sold

    @rule(
        booking_id=st.sampled_from(BOOKING_IDS),
        seats=st.lists(
            st.sampled_from(STANDARD_SEATS), min_size=1, max_size=3, unique=True
        ),
    )
    def book_standard_seats(self, booking_id: str, seats: list[str]) -> None:
        """Request standard seats only, so most bookings succeed or find seats sold."""
        self.decide_booking(booking_id, seats, [], max_seats=3)

    @rule(booking_id=st.sampled_from(BOOKING_IDS))
    def cancel_booking(self, booking_id: str) -> None:
        if booking_id in self.model_cancelled:
            with pytest.raises(BookingAlreadyCancelledError):
                self.showtime.cancel_booking(booking_id)
            return
        if booking_id not in self.model_bookings:
            with pytest.raises(BookingNotFoundError):
                self.showtime.cancel_booking(booking_id)
            return

        self.showtime.cancel_booking(booking_id)
        event("cancel: released seats")
        self.model_cancelled.add(booking_id)
        for seat in self.model_bookings.pop(booking_id):
            del self.model_sold[seat]

    @invariant()
    def matches_model(self) -> None:
        assert self.showtime.sold == self.model_sold
        assert self.showtime.bookings == self.model_bookings
        assert self.showtime.decided == self.model_decided
        assert self.showtime.cancelled == self.model_cancelled

    @invariant()
    def seat_sold_once(self) -> None:
        seat_counts = Counter(
            s for seats in self.showtime.bookings.values() for s in seats
        )

        assert all(count == 1 for count in seat_counts.values())
        for seat, booking_id in self.showtime.sold.items():
            assert seat in self.showtime.bookings[booking_id]

    @invariant()
    def sold_is_union_of_bookings(self) -> None:
        booked = {s for seats in self.showtime.bookings.values() for s in seats}

        assert set(self.showtime.sold) == booked

    @invariant()
    def each_id_decided_once(self) -> None:
        self.app.save(self.showtime)
        stored = self.app.events.get(self.showtime.id)
        decisions = Counter(
            e.booking_id for e in stored if type(e).__name__ in DECISION_EVENTS
        )

        assert set(decisions) == self.showtime.decided
        assert all(count == 1 for count in decisions.values())

    @invariant()
    def replay_rebuilds_state(self) -> None:
        self.app.save(self.showtime)
        reloaded = self.app.repository.get(self.showtime.id)

        assert reloaded.sold == self.showtime.sold
        assert reloaded.bookings == self.showtime.bookings
        assert reloaded.decided == self.showtime.decided
        assert reloaded.cancelled == self.showtime.cancelled
        assert reloaded.version == self.showtime.version


ShowtimeMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestShowtimeProperties = ShowtimeMachine.TestCase
