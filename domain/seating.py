"""Seat maps: rows of seats, aisles and gaps, and the checks on requested seat ids.

A seat map is a tuple of rows. Each row is a label (``A``, ``B``, ... ``AA``) and a
layout string read left to right:

- ``s``: a standard seat, ``w``: a wheelchair space. Each takes the next number.
- ``.``: a numbered position with no seat (a gangway or pillar in halls that number
  by position), so ``A6`` in ``sssss.ssss`` names no seat.
- ``|``: an aisle between two neighbours. It takes no number, so ``sssss|sssss``
  numbers its seats 1 to 10, and seats 5 and 6 are not neighbours.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from types import MappingProxyType

SEAT_ID = re.compile(r"(?P<row>[A-Z]{1,2})(?P<number>[1-9][0-9]{0,2})")
LAYOUT = re.compile(r"[sw.|]+")
ROW_LABEL = re.compile(r"[A-Z]{1,2}")


class SeatKind(StrEnum):
    """Kind of a numbered position: a seat, a wheelchair space or a gap."""

    STANDARD = "standard"
    WHEELCHAIR = "wheelchair"
    GAP = "gap"


@dataclass(frozen=True)
class Position:
    """One numbered position of a row, with the aisle flag for the side before it."""

    seat_id: str
    number: int
    kind: SeatKind
    aisle_before: bool


@dataclass(frozen=True)
class SeatProblem:
    """A requested seat id that cannot be booked, and why."""

    seat_id: str
    reason: str


@dataclass(frozen=True)
class SeatMap:
    """The fixed layout of an auditorium."""

    rows: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        check_layout(self.rows)

    def positions(self) -> list[Position]:
        """Return every numbered position, row by row, left to right."""
        return list(self._positions)

    def seat_kinds(self) -> Mapping[str, SeatKind]:
        """Return the kind of every bookable seat (gaps left out), by seat id."""
        return MappingProxyType(self._seat_kinds)

    def gap_ids(self) -> frozenset[str]:
        """Return the ids of the numbered positions that hold no seat."""
        return self._gap_ids

    # A seat map never changes, and checking a booking reads it whole, so the
    # numbering is computed once per map rather than once per command.
    @cached_property
    def _positions(self) -> tuple[Position, ...]:
        return tuple(
            p for label, layout in self.rows for p in row_positions(label, layout)
        )

    @cached_property
    def _seat_kinds(self) -> dict[str, SeatKind]:
        return {p.seat_id: p.kind for p in self._positions if p.kind != SeatKind.GAP}

    @cached_property
    def _gap_ids(self) -> frozenset[str]:
        return frozenset(p.seat_id for p in self._positions if p.kind == SeatKind.GAP)

    def capacity(self) -> int:
        """Return the number of bookable seats and wheelchair spaces."""
        return len(self.seat_kinds())


def row_positions(label: str, layout: str) -> list[Position]:
    """Number the positions of one row, skipping aisles."""
    positions: list[Position] = []
    aisle_before = False
    for symbol in layout:
        if symbol == "|":
            aisle_before = True
            continue

        number = len(positions) + 1
        kind = {"s": SeatKind.STANDARD, "w": SeatKind.WHEELCHAIR}.get(
            symbol, SeatKind.GAP
        )
        positions.append(Position(f"{label}{number}", number, kind, aisle_before))
        aisle_before = False
    return positions


def check_layout(rows: tuple[tuple[str, str], ...]) -> None:
    """Raise ValueError unless ``rows`` is a well-formed, non-empty seat map."""
    if not rows:
        raise ValueError("a seat map needs at least one row")

    labels = [label for label, _ in rows]
    if len(set(labels)) != len(labels):
        raise ValueError(f"row labels repeat: {labels}")

    for label, layout in rows:
        if not ROW_LABEL.fullmatch(label):
            raise ValueError(f"row label {label!r} is not one or two capital letters")
        if not LAYOUT.fullmatch(layout) or not set(layout) & {"s", "w"}:
            msg = (
                f"row {label} layout {layout!r} needs seats ('s' or 'w') "
                "and only the characters s w . |"
            )
            raise ValueError(msg)


def find_seat_problems(
    seat_map: SeatMap, seats: list[str], wheelchair_spaces: list[str]
) -> list[SeatProblem]:
    """Check requested seat ids against the map, returning one problem per bad id.

    Ordinary seats and wheelchair spaces are requested in separate lists, so that a
    wheelchair space is never sold as an ordinary seat by mistake. An id that is
    requested twice, in either list, is a problem too: a seat is sold once per
    booking.
    """
    kinds = seat_map.seat_kinds()
    gaps = seat_map.gap_ids()
    problems: list[SeatProblem] = []
    seen: set[str] = set()

    requests = [(s, SeatKind.STANDARD) for s in seats]
    requests += [(s, SeatKind.WHEELCHAIR) for s in wheelchair_spaces]
    for seat_id, wanted in requests:
        problem = seat_id_problem(seat_id, wanted, kinds, gaps, seen)
        if problem:
            problems.append(SeatProblem(seat_id, problem))
        seen.add(seat_id)
    return problems


def seat_id_problem(
    seat_id: str,
    wanted: SeatKind,
    kinds: Mapping[str, SeatKind],
    gaps: frozenset[str],
    seen: set[str],
) -> str | None:
    """Return why one requested seat id cannot be booked, or None when it can."""
    if not SEAT_ID.fullmatch(seat_id):
        if SEAT_ID.fullmatch(seat_id.strip().upper()):
            return "invalid seat id: write it in capitals with no spaces, e.g. A1"
        return "invalid seat id: expected a row letter and a seat number, e.g. A1"
    if seat_id in seen:
        return "seat is requested more than once"
    if seat_id in gaps:
        return "position is an aisle or gap, not a seat"

    kind = kinds.get(seat_id)
    if kind is None:
        return "seat is not on this auditorium's seat map"
    if kind == SeatKind.WHEELCHAIR and wanted != SeatKind.WHEELCHAIR:
        return "seat is a wheelchair space: request it in wheelchairSpaces"
    if kind != SeatKind.WHEELCHAIR and wanted == SeatKind.WHEELCHAIR:
        return "seat is not a wheelchair space: request it in seats"
    return None


@lru_cache(maxsize=4096)
def seat_map_of(rows: tuple[tuple[str, str], ...]) -> SeatMap:
    """Return the SeatMap of ``rows``, built once for each distinct layout."""
    return SeatMap(rows)
