"""Unit tests of the JSON form of booking commands on the command topic."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.commands import (
    BookSeats,
    CancelBooking,
    Command,
    CommandDecodeError,
    decode_command,
    encode_command,
)

pytestmark = pytest.mark.unit

BOOKING_ID = "0b7e6a52-5d2f-4c1e-9a43-8f7d2c1b0a99"
SHOWTIME_ID = "3c845d41-b69c-568c-9821-393ea98d127f"


def book_seats_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": "BookSeats",
        "booking_id": BOOKING_ID,
        "showtime_id": SHOWTIME_ID,
        "seats": ["A1", "A2"],
        "payment_method": "card",
        "wheelchair_spaces": [],
        "idempotency_key": None,
    }
    body.update(changes)
    return body


def cancel_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": "CancelBooking",
        "booking_id": BOOKING_ID,
        "showtime_id": SHOWTIME_ID,
    }
    body.update(changes)
    return body


def without(body: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in body.items() if k != key}


def record(body: object) -> bytes:
    return json.dumps(body).encode()


uuid_texts = st.uuids().map(str)
book_seats_commands = st.builds(
    BookSeats,
    booking_id=uuid_texts,
    showtime_id=uuid_texts,
    seats=st.lists(st.text()),
    payment_method=st.text(),
    wheelchair_spaces=st.lists(st.text()),
    idempotency_key=st.none() | st.text(),
)
cancel_commands = st.builds(
    CancelBooking, booking_id=uuid_texts, showtime_id=uuid_texts
)


class TestEncodeCommand:
    def test_book_seats_tagged_with_type(self) -> None:
        command = BookSeats(BOOKING_ID, SHOWTIME_ID, ["A1"], "card")

        assert json.loads(encode_command(command))["type"] == "BookSeats"

    def test_cancel_encodes_all_fields(self) -> None:
        command = CancelBooking(BOOKING_ID, SHOWTIME_ID)

        assert json.loads(encode_command(command)) == cancel_body()

    def test_book_seats_decodes_back(self) -> None:
        command = BookSeats(BOOKING_ID, SHOWTIME_ID, ["A1"], "card", ["N1"], "key-1")

        assert decode_command(encode_command(command)) == command

    @settings(max_examples=300, deadline=None)
    @given(command=book_seats_commands | cancel_commands)
    def test_round_trip_keeps_command(self, command: Command) -> None:
        assert decode_command(encode_command(command)) == command


class TestDecodeBookSeats:
    def test_full_record_decodes(self) -> None:
        command = decode_command(record(book_seats_body(idempotency_key="key-1")))

        assert command == BookSeats(
            BOOKING_ID, SHOWTIME_ID, ["A1", "A2"], "card", [], "key-1"
        )

    def test_optional_fields_default(self) -> None:
        body = without(
            without(book_seats_body(), "wheelchair_spaces"), "idempotency_key"
        )
        command = decode_command(record(body))

        assert command == BookSeats(BOOKING_ID, SHOWTIME_ID, ["A1", "A2"], "card")

    @pytest.mark.parametrize(
        "field", ["booking_id", "showtime_id", "seats", "payment_method"]
    )
    def test_missing_field_rejected(self, field: str) -> None:
        with pytest.raises(CommandDecodeError, match=field):
            decode_command(record(without(book_seats_body(), field)))

    @pytest.mark.parametrize(
        "field", ["tiket_type", "discount", "Idempotency_Key", "type_", "seat"]
    )
    def test_unknown_field_rejected(self, field: str) -> None:
        with pytest.raises(CommandDecodeError, match=field):
            decode_command(record(book_seats_body(**{field: 100})))

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("booking_id", 7),
            ("booking_id", None),
            ("showtime_id", ["x"]),
            ("seats", "A1"),
            ("seats", [1]),
            ("seats", None),
            ("seats", {"A1": True}),
            ("seats", [["A1"]]),
            ("wheelchair_spaces", "N1"),
            ("wheelchair_spaces", [None]),
            ("payment_method", 5),
            ("payment_method", None),
            ("payment_method", 1.5),
        ],
    )
    def test_wrong_type_rejected(self, field: str, value: object) -> None:
        with pytest.raises(CommandDecodeError, match=field):
            decode_command(record(book_seats_body(**{field: value})))

    @pytest.mark.parametrize("value", [5, ["k"], {"k": 1}, True])
    def test_wrong_idempotency_key_rejected(self, value: object) -> None:
        with pytest.raises(CommandDecodeError, match="idempotency_key"):
            decode_command(record(book_seats_body(idempotency_key=value)))

    @pytest.mark.parametrize(
        "value",
        [
            "b1",
            "",
            SHOWTIME_ID.upper(),
            SHOWTIME_ID.replace("-", ""),
            "{" + SHOWTIME_ID + "}",
            "urn:uuid:" + SHOWTIME_ID,
            " " + SHOWTIME_ID,
            SHOWTIME_ID + "\n",
        ],
    )
    @pytest.mark.parametrize("field", ["booking_id", "showtime_id"])
    def test_non_uuid_id_rejected(self, field: str, value: str) -> None:
        with pytest.raises(CommandDecodeError, match=f"{field} .* is not a UUID"):
            decode_command(record(book_seats_body(**{field: value})))


class TestDecodeCancelBooking:
    def test_record_decodes(self) -> None:
        assert decode_command(record(cancel_body())) == CancelBooking(
            BOOKING_ID, SHOWTIME_ID
        )

    @pytest.mark.parametrize("field", ["booking_id", "showtime_id"])
    def test_missing_field_rejected(self, field: str) -> None:
        with pytest.raises(CommandDecodeError, match=field):
            decode_command(record(without(cancel_body(), field)))

    @pytest.mark.parametrize("field", ["seats", "reason", "refund"])
    def test_unknown_field_rejected(self, field: str) -> None:
        with pytest.raises(CommandDecodeError, match=field):
            decode_command(record(cancel_body(**{field: "x"})))

    @pytest.mark.parametrize("value", [1, None, "b1", [BOOKING_ID]])
    def test_bad_booking_id_rejected(self, value: object) -> None:
        with pytest.raises(CommandDecodeError, match="booking_id"):
            decode_command(record(cancel_body(booking_id=value)))


class TestDecodeMalformedRecord:
    @pytest.mark.parametrize(
        "data",
        [
            None,
            b"",
            b"   ",
            b"{",
            b"not json",
            b'{"type": "CancelBooking",}',
            b"{'type': 'CancelBooking'}",
            b"\xff\xfe\xfa",
            b'{"type": "Cancel\xffBooking"}',
            b"\x00",
        ],
    )
    def test_invalid_json_rejected(self, data: bytes | None) -> None:
        with pytest.raises(CommandDecodeError, match="not valid JSON"):
            decode_command(data)

    @pytest.mark.parametrize(
        "literal", [b"NaN", b"Infinity", b"-Infinity", b'{"seats": NaN}']
    )
    def test_nan_literal_rejected(self, literal: bytes) -> None:
        with pytest.raises(CommandDecodeError, match="not valid JSON"):
            decode_command(literal)

    def test_nan_inside_command_rejected(self) -> None:
        data = record(cancel_body()).replace(b"}", b', "fee": NaN}')

        with pytest.raises(CommandDecodeError, match="NaN"):
            decode_command(data)

    def test_overflowing_float_rejected(self) -> None:
        data = record(book_seats_body(payment_method=0)).replace(
            b'"payment_method": 0', b'"payment_method": 1e309'
        )

        with pytest.raises(CommandDecodeError, match="payment_method inf is not text"):
            decode_command(data)

    def test_huge_integer_rejected(self) -> None:
        data = record(cancel_body()).replace(b"}", b', "n": ' + b"1" * 5000 + b"}")

        with pytest.raises(CommandDecodeError):
            decode_command(data)

    @pytest.mark.parametrize(
        ("data", "type_name"),
        [
            (b"[]", "list"),
            (b'["BookSeats"]', "list"),
            (b"1", "int"),
            (b"1.5", "float"),
            (b'"BookSeats"', "str"),
            (b"null", "NoneType"),
            (b"true", "bool"),
        ],
    )
    def test_non_object_rejected(self, data: bytes, type_name: str) -> None:
        with pytest.raises(
            CommandDecodeError, match=f"JSON {type_name}, not an object"
        ):
            decode_command(data)

    @pytest.mark.parametrize(
        "kind",
        ["HoldSeats", "bookseats", "BookSeats ", "__init__", None, 1, ["BookSeats"]],
    )
    def test_unknown_type_rejected(self, kind: object) -> None:
        with pytest.raises(CommandDecodeError, match="unknown command type"):
            decode_command(record(cancel_body(type=kind)))

    def test_missing_type_rejected(self) -> None:
        with pytest.raises(CommandDecodeError, match="unknown command type None"):
            decode_command(record(without(cancel_body(), "type")))

    def test_deep_nesting_rejected(self) -> None:
        with pytest.raises(CommandDecodeError):
            decode_command(b"[" * 100_000)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.uuids().map(str),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
command_like_bodies = st.fixed_dictionaries(
    {"type": st.sampled_from(["BookSeats", "CancelBooking"]) | json_values},
    optional={
        "booking_id": uuid_texts | json_values,
        "showtime_id": uuid_texts | json_values,
        "seats": st.lists(st.text(max_size=3)) | json_values,
        "payment_method": st.text() | json_values,
        "wheelchair_spaces": st.lists(st.text(max_size=3)) | json_values,
        "idempotency_key": st.none() | st.text(),
        "discount": json_values,
    },
)


def decode_or_error(data: bytes) -> Command | CommandDecodeError:
    try:
        return decode_command(data)
    except CommandDecodeError as error:
        return error


class TestDecodeProperties:
    @settings(max_examples=500, deadline=None)
    @given(data=st.binary(max_size=200))
    def test_arbitrary_bytes_only_decode_error(self, data: bytes) -> None:
        assert isinstance(
            decode_or_error(data), BookSeats | CancelBooking | CommandDecodeError
        )

    @settings(max_examples=500, deadline=None)
    @given(body=command_like_bodies)
    def test_command_like_json_only_decode_error(self, body: dict[str, object]) -> None:
        assert isinstance(
            decode_or_error(record(body)),
            BookSeats | CancelBooking | CommandDecodeError,
        )

    @settings(max_examples=300, deadline=None)
    @given(body=command_like_bodies)
    def test_decoded_command_encodes_back(self, body: dict[str, object]) -> None:
        result = decode_or_error(record(body))

        if not isinstance(result, CommandDecodeError):
            assert decode_command(encode_command(result)) == result
