"""Unit tests of the Showtime aggregate: scheduling, booking, cancelling, reloading."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent

from domain.errors import (
    BookingAlreadyCancelledError,
    BookingNotFoundError,
    SeatUnavailableError,
    ShowtimeStartedError,
    TooManySeatsError,
)
from domain.showtime import Showtime, showtime_id

pytestmark = pytest.mark.unit

STARTS_AT = datetime(2025, 3, 14, 19, 30, tzinfo=UTC)
# The decision time of every booking below, unless a test passes another.
BEFORE = STARTS_AT - timedelta(hours=1)
MAX_SEATS = 10

# Rows A to M with ten seats each and an aisle between seats 5 and 6. Row N has two
# wheelchair spaces (N1, N2), a numbered gap (N3) and standard seats N4 to N8.
ROWS = [[label, "sssss|sssss"] for label in "ABCDEFGHIJKLM"] + [["N", "ww.ss|sss"]]


def schedule(
    starts_at: datetime = STARTS_AT, auditorium_id: str = "hall-1"
) -> Showtime:
    return Showtime("movie-1", auditorium_id, "Hall 1", starts_at, ROWS)


def book(
    showtime: Showtime,
    booking_id: str,
    seats: list[str],
    wheelchair_spaces: list[str] | None = None,
    max_seats: int = MAX_SEATS,
) -> None:
    showtime.decide_booking(
        booking_id, seats, wheelchair_spaces or [], "card", max_seats, now=BEFORE
    )


def last_event(showtime: Showtime) -> DomainEvent:
    return showtime.pending_events[-1]


def in_memory_application() -> Application:
    return Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


class TestScheduleShowtime:
    def test_id_derives_from_hall_and_start(self) -> None:
        assert schedule().id == showtime_id("hall-1", STARTS_AT)

    @pytest.mark.parametrize("hours", [-5, 0, 2, 9])
    def test_same_instant_same_id(self, hours: int) -> None:
        zone = timezone(timedelta(hours=hours))
        local_start = STARTS_AT.astimezone(zone)

        assert schedule(local_start).id == schedule(STARTS_AT).id

    def test_other_start_other_id(self) -> None:
        later = STARTS_AT + timedelta(minutes=1)

        assert schedule(later).id != schedule(STARTS_AT).id

    def test_other_hall_other_id(self) -> None:
        assert schedule(auditorium_id="hall-2").id != schedule().id

    def test_naive_start_rejected(self) -> None:
        with pytest.raises(ValueError, match="no time zone"):
            schedule(datetime(2025, 3, 14, 19, 30))

    def test_malformed_seat_map_rejected(self) -> None:
        with pytest.raises(ValueError):
            Showtime("movie-1", "hall-1", "Hall 1", STARTS_AT, [["A", "ssx"]])

    def test_new_showtime_has_no_sales(self) -> None:
        showtime = schedule()

        assert showtime.sold == {}
        assert showtime.decided == set()
        assert showtime.version == 1


class TestBookSeats:
    def test_booked_seats_are_sold(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["A5", "A6"], ["N1"])

        assert showtime.sold == {"A5": "b1", "A6": "b1", "N1": "b1"}
        assert showtime.bookings == {"b1": ["A5", "A6", "N1"]}
        assert showtime.has_decided("b1")

    def test_booking_stores_seats_booked(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["A5", "A6"], ["N1"])
        event = last_event(showtime)

        assert type(event).__name__ == "SeatsBooked"
        assert event.seats == ["A5", "A6"]
        assert event.wheelchair_spaces == ["N1"]

    def test_taken_seat_rejects_whole_booking(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["A2"])
        book(showtime, "b2", ["A1", "A2", "A3"])

        assert showtime.sold == {"A2": "b1"}
        assert "b2" not in showtime.bookings
        assert showtime.has_decided("b2")

    def test_taken_seats_named_in_rejection(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["A2", "A4"], ["N2"])
        book(showtime, "b2", ["A1", "A2", "A3", "A4"], ["N2"])
        event = last_event(showtime)

        assert type(event).__name__ == "BookingRejected"
        assert event.booking_id == "b2"
        assert event.code == "seats_unavailable"
        assert event.rejected_seats == ["A2", "A4", "N2"]
        assert event.seats == ["A1", "A2", "A3", "A4"]
        assert event.wheelchair_spaces == ["N2"]

    def test_book_seats_raises_unavailable(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["C7"])

        with pytest.raises(SeatUnavailableError) as caught:
            showtime.book_seats("b2", ["C7", "C8"], [], "card", MAX_SEATS, now=BEFORE)
        assert caught.value.seats == ("C7",)
        assert not showtime.has_decided("b2")

    def test_invalid_seats_named_in_rejection(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["A1", "Z99", "a1", "N3", "N1"])
        event = last_event(showtime)

        assert event.code == "invalid_seats"
        assert event.rejected_seats == ["Z99", "a1", "N3", "N1"]
        assert showtime.sold == {}

    def test_wheelchair_list_books_space(self) -> None:
        showtime = schedule()
        book(showtime, "b1", [], ["N2"])

        assert showtime.sold == {"N2": "b1"}

    def test_limit_allows_max_seats(self) -> None:
        showtime = schedule()
        book(showtime, "b1", [f"B{n}" for n in range(1, 11)])

        assert len(showtime.sold) == MAX_SEATS

    def test_too_many_seats_rejected(self) -> None:
        showtime = schedule()
        book(showtime, "b1", [f"B{n}" for n in range(1, 11)] + ["C1"])
        event = last_event(showtime)

        assert event.code == "too_many_seats"
        assert showtime.sold == {}

    def test_limit_counts_wheelchair_spaces(self) -> None:
        showtime = schedule()

        with pytest.raises(TooManySeatsError):
            showtime.book_seats("b1", ["A1", "A2"], ["N1"], "card", 2, now=BEFORE)

    def test_limit_counts_distinct_seats(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["K1"] * 10, max_seats=2)
        event = last_event(showtime)

        assert event.code == "invalid_seats"
        assert set(event.rejected_seats) == {"K1"}

    def test_empty_request_rejected(self) -> None:
        showtime = schedule()
        book(showtime, "b1", [], [])
        event = last_event(showtime)

        assert event.code == "invalid_seats"
        assert event.rejected_seats == []
        assert "at least one seat" in event.reason

    def test_repeated_booking_id_raises(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["A1"])
        version = showtime.version

        with pytest.raises(ValueError, match="already decided"):
            showtime.book_seats("b1", ["A2"], [], "card", MAX_SEATS, now=BEFORE)
        assert showtime.version == version
        assert showtime.sold == {"A1": "b1"}

    def test_repeated_rejected_id_raises(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["Z99"])

        assert showtime.has_decided("b1")
        with pytest.raises(ValueError, match="already decided"):
            book(showtime, "b1", ["A1"])
        assert showtime.sold == {}

    def test_unknown_id_not_decided(self) -> None:
        assert not schedule().has_decided("b1")


class TestCancelBooking:
    def test_cancel_frees_seats(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["H1", "H2", "H3"])
        book(showtime, "b2", ["H4"])
        showtime.cancel_booking("b1")

        assert showtime.sold == {"H4": "b2"}
        assert "b1" not in showtime.bookings
        assert "b1" in showtime.cancelled

    def test_cancel_stores_released_seats(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["H1", "H2"], ["N1"])
        showtime.cancel_booking("b1")
        event = last_event(showtime)

        assert type(event).__name__ == "BookingCancelled"
        assert event.seats == ["H1", "H2", "N1"]

    def test_freed_seats_can_be_rebooked(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["H1", "H2", "H3"])
        showtime.cancel_booking("b1")
        book(showtime, "b2", ["H1", "H2", "H3", "H4", "H5"])

        assert showtime.bookings == {"b2": ["H1", "H2", "H3", "H4", "H5"]}

    def test_cancel_twice_raises(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["H1"])
        showtime.cancel_booking("b1")

        with pytest.raises(BookingAlreadyCancelledError) as caught:
            showtime.cancel_booking("b1")
        assert caught.value.code == "already_cancelled"

    def test_cancel_unknown_raises(self) -> None:
        with pytest.raises(BookingNotFoundError) as caught:
            schedule().cancel_booking("b1")
        assert caught.value.code == "booking_not_found"

    def test_cancel_rejected_raises(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["Z99"])

        with pytest.raises(BookingNotFoundError):
            showtime.cancel_booking("b1")

    def test_cancelled_id_stays_decided(self) -> None:
        showtime = schedule()
        book(showtime, "b1", ["H1"])
        showtime.cancel_booking("b1")

        with pytest.raises(ValueError, match="already decided"):
            book(showtime, "b1", ["H1"])


class TestReloadShowtime:
    def build_history(self) -> Showtime:
        showtime = schedule(STARTS_AT.astimezone(timezone(timedelta(hours=2))))
        book(showtime, "b1", ["A1", "A2"], ["N1"])
        book(showtime, "b2", ["A2", "A3"])
        book(showtime, "b3", ["Z99"])
        book(showtime, "b4", ["B5", "B6"])
        showtime.cancel_booking("b1")
        book(showtime, "b5", ["A1"])
        return showtime

    def test_reloaded_equals_in_memory(self) -> None:
        showtime = self.build_history()
        app = in_memory_application()
        app.save(showtime)
        reloaded = app.repository.get(showtime.id)

        assert reloaded.sold == showtime.sold
        assert reloaded.bookings == showtime.bookings
        assert reloaded.decided == showtime.decided
        assert reloaded.cancelled == showtime.cancelled
        assert reloaded.version == showtime.version
        assert reloaded.starts_at == showtime.starts_at
        assert reloaded.rows == showtime.rows

    def test_stored_events_in_order(self) -> None:
        showtime = self.build_history()
        app = in_memory_application()
        app.save(showtime)
        names = [type(e).__name__ for e in app.events.get(showtime.id)]

        assert names == [
            "Scheduled",
            "SeatsBooked",
            "BookingRejected",
            "BookingRejected",
            "SeatsBooked",
            "BookingCancelled",
            "SeatsBooked",
        ]

    def test_reloaded_keeps_deciding(self) -> None:
        app = in_memory_application()
        showtime = self.build_history()
        app.save(showtime)
        reloaded = app.repository.get(showtime.id)
        book(reloaded, "b6", ["B5", "B7"])
        book(reloaded, "b7", ["B7", "B8"])
        app.save(reloaded)
        again = app.repository.get(showtime.id)

        assert again.sold["B7"] == "b7"
        assert "b6" not in again.bookings
        assert again.version == showtime.version + 2

    def test_reloaded_rejects_repeated_id(self) -> None:
        app = in_memory_application()
        showtime = self.build_history()
        app.save(showtime)
        reloaded = app.repository.get(showtime.id)

        with pytest.raises(ValueError, match="already decided"):
            book(reloaded, "b3", ["C1"])


class TestBookingWindow:
    def test_booking_at_start_is_rejected(self) -> None:
        showtime = schedule()

        showtime.decide_booking("b1", ["A1"], [], "card", MAX_SEATS, now=STARTS_AT)

        event = last_event(showtime)
        assert isinstance(event, Showtime.BookingRejected)
        assert event.code == "showtime_started"
        assert "A1" not in showtime.sold

    def test_booking_after_start_raises(self) -> None:
        showtime = schedule()
        late = STARTS_AT + timedelta(minutes=1)

        with pytest.raises(ShowtimeStartedError, match="bookings are closed"):
            showtime.book_seats("b1", ["A1"], [], "card", MAX_SEATS, now=late)

    def test_booking_just_before_start_is_accepted(self) -> None:
        showtime = schedule()
        just_before = STARTS_AT - timedelta(seconds=1)

        showtime.decide_booking("b1", ["A1"], [], "card", MAX_SEATS, now=just_before)

        assert showtime.sold == {"A1": "b1"}
