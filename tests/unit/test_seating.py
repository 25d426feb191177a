"""Unit tests of seat maps: numbering, layout checks and requested seat ids."""

import pytest

from domain.seating import SeatKind, SeatMap, SeatProblem, find_seat_problems

pytestmark = pytest.mark.unit

# Rows A to M with ten seats each and an aisle between seats 5 and 6. Row N has two
# wheelchair spaces (N1, N2), a numbered gap (N3) and standard seats N4 to N8.
AUDITORIUM_ROWS = tuple((label, "sssss|sssss") for label in "ABCDEFGHIJKLM")
AUDITORIUM = SeatMap(AUDITORIUM_ROWS + (("N", "ww.ss|sss"),))


def seat_ids(layout: str, label: str = "A") -> list[str]:
    return list(SeatMap(((label, layout),)).seat_kinds())


class TestNumberSeats:
    def test_aisle_takes_no_number(self) -> None:
        assert seat_ids("sssss|sssss") == [f"A{n}" for n in range(1, 11)]

    def test_aisle_marks_next_seat(self) -> None:
        positions = SeatMap((("A", "sssss|sssss"),)).positions()
        flagged = [p.seat_id for p in positions if p.aisle_before]

        assert flagged == ["A6"]

    def test_gap_takes_a_number(self) -> None:
        positions = SeatMap((("A", "sssss.ssss"),)).positions()

        assert [p.number for p in positions] == list(range(1, 11))
        assert positions[5].seat_id == "A6"
        assert positions[5].kind == SeatKind.GAP

    def test_gap_is_not_a_seat(self) -> None:
        ids = seat_ids("sssss.ssss")

        assert "A6" not in ids
        assert ids[-1] == "A10"

    def test_capacity_skips_gaps_and_aisles(self) -> None:
        seat_map = SeatMap((("A", "sss.s|ss"), ("B", "ww|s")))

        assert seat_map.capacity() == 9

    def test_wheelchair_spaces_are_numbered(self) -> None:
        kinds = SeatMap((("A", "ww|ss"),)).seat_kinds()

        assert kinds == {
            "A1": SeatKind.WHEELCHAIR,
            "A2": SeatKind.WHEELCHAIR,
            "A3": SeatKind.STANDARD,
            "A4": SeatKind.STANDARD,
        }

    def test_positions_run_row_by_row(self) -> None:
        seat_map = SeatMap((("B", "ss"), ("A", "s")))
        ids = [p.seat_id for p in seat_map.positions()]

        assert ids == ["B1", "B2", "A1"]

    def test_two_letter_row_label(self) -> None:
        assert seat_ids("ss", label="AA") == ["AA1", "AA2"]

    def test_example_auditorium_capacity(self) -> None:
        assert AUDITORIUM.capacity() == 13 * 10 + 7


class TestCheckLayout:
    @pytest.mark.parametrize(
        "rows",
        [
            pytest.param((), id="no rows"),
            pytest.param((("A", "sss"), ("A", "sss")), id="repeated label"),
            pytest.param((("a", "sss"),), id="lowercase label"),
            pytest.param((("AAA", "sss"),), id="three-letter label"),
            pytest.param((("", "sss"),), id="empty label"),
            pytest.param((("A1", "sss"),), id="label with digit"),
            pytest.param((("A", ""),), id="empty layout"),
            pytest.param((("A", "..."),), id="only gaps"),
            pytest.param((("A", "|||"),), id="only aisles"),
            pytest.param((("A", ".|."),), id="gaps and aisle only"),
            pytest.param((("A", "ssx"),), id="unknown symbol"),
            pytest.param((("A", "ss s"),), id="space in layout"),
            pytest.param((("A", "SSS"),), id="capital symbols"),
        ],
    )
    def test_malformed_layout_raises(self, rows: tuple[tuple[str, str], ...]) -> None:
        with pytest.raises(ValueError):
            SeatMap(rows)

    def test_layout_trailing_newline_raises(self) -> None:
        with pytest.raises(ValueError):
            SeatMap((("A", "sss\n"),))

    def test_label_trailing_newline_raises(self) -> None:
        with pytest.raises(ValueError):
            SeatMap((("A\n", "sss"),))

    def test_error_names_the_row(self) -> None:
        with pytest.raises(ValueError, match="row B"):
            SeatMap((("A", "sss"), ("B", "sxs")))


class TestFindSeatProblems:
    def test_valid_request_has_no_problems(self) -> None:
        problems = find_seat_problems(AUDITORIUM, ["A1", "A6", "M10", "N4"], ["N1"])

        assert problems == []

    @pytest.mark.parametrize(
        ("seats", "wheelchair_spaces", "bad_id", "reason"),
        [
            pytest.param(["Z99"], [], "Z99", "not on this auditorium", id="Z99"),
            pytest.param(["A0"], [], "A0", "expected a row letter", id="A0"),
            pytest.param(["A01"], [], "A01", "expected a row letter", id="A01"),
            pytest.param(["a1"], [], "a1", "capitals with no spaces", id="a1"),
            pytest.param([" K1"], [], " K1", "capitals with no spaces", id="K1 space"),
            pytest.param(["K1 "], [], "K1 ", "capitals with no spaces", id="K1 tail"),
            pytest.param([""], [], "", "expected a row letter", id="empty id"),
            pytest.param(["AAA1"], [], "AAA1", "expected a row letter", id="AAA1"),
            pytest.param(["A1000"], [], "A1000", "expected a row letter", id="A1000"),
            pytest.param(["N3"], [], "N3", "aisle or gap", id="gap position"),
            pytest.param(["A11"], [], "A11", "not on this auditorium", id="past aisle"),
            pytest.param(["A15"], [], "A15", "not on this auditorium", id="wider hall"),
            pytest.param(["P1"], [], "P1", "not on this auditorium", id="more rows"),
            pytest.param(["N1"], [], "N1", "wheelchairSpaces", id="wheelchair as seat"),
            pytest.param([], ["N4"], "N4", "request it in seats", id="seat as space"),
            pytest.param([], ["N3"], "N3", "aisle or gap", id="gap as space"),
        ],
    )
    def test_bad_seat_named_once(
        self, seats: list[str], wheelchair_spaces: list[str], bad_id: str, reason: str
    ) -> None:
        problems = find_seat_problems(AUDITORIUM, ["A1", *seats], wheelchair_spaces)

        assert len(problems) == 1
        assert problems[0].seat_id == bad_id
        assert reason in problems[0].reason

    def test_every_bad_seat_named(self) -> None:
        seats = ["Z99", "A1", "A0", "a1", " K1", "N3", "A15", "N1", "B2"]
        problems = find_seat_problems(AUDITORIUM, seats, ["C3"])
        named = [p.seat_id for p in problems]

        assert named == ["Z99", "A0", "a1", " K1", "N3", "A15", "N1", "C3"]

    def test_trailing_newline_is_rejected(self) -> None:
        problems = find_seat_problems(AUDITORIUM, ["A1\n"], [])

        assert [p.seat_id for p in problems] == ["A1\n"]


class TestDuplicateSeats:
    def test_repeated_seat_named_once(self) -> None:
        problems = find_seat_problems(AUDITORIUM, ["K1", "K1"], [])

        assert problems == [SeatProblem("K1", "seat is requested more than once")]

    def test_each_repeat_is_a_problem(self) -> None:
        problems = find_seat_problems(AUDITORIUM, ["K1"] * 10, [])

        assert len(problems) == 9
        assert {p.seat_id for p in problems} == {"K1"}

    def test_case_and_space_variants(self) -> None:
        problems = find_seat_problems(AUDITORIUM, ["K1", "k1", " K1"], [])
        named = [p.seat_id for p in problems]

        assert named == ["k1", " K1"]

    def test_repeated_wheelchair_space(self) -> None:
        problems = find_seat_problems(AUDITORIUM, [], ["N1", "N1"])

        assert [p.seat_id for p in problems] == ["N1"]

    def test_seat_in_both_lists(self) -> None:
        problems = find_seat_problems(AUDITORIUM, ["N4"], ["N4"])
        reasons = [p.reason for p in problems]

        assert reasons == ["seat is requested more than once"]
