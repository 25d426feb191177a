"""Bad input gets a 4xx that names the field and value, and sends no command.

Every case checks the command topic's end offsets before and after the request:
a rejected request must leave nothing on it.
"""

import json
import logging
import math
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from infra.runtime import embedded
from infra.runtime.embedded import free_port
from read_api.errors import MAX_INPUT_CHARS, MAX_INPUT_ITEMS, validation_entry
from read_api.read_models import FailureLog
from tests.integration.test_api_support import (
    ApiStack,
    booking_body,
    command_end_offsets,
    new_id,
    open_stack,
    running_api,
    seed_movie,
    seed_showtime,
)

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(service_urls: dict[str, str]) -> AsyncIterator[ApiStack]:
    """Run one API for the module on a namespace of its own."""
    async with open_stack(service_urls) as running:
        yield running


@pytest.fixture(scope="module")
def showtime(stack: ApiStack) -> dict[str, Any]:
    """A showtime in the test hall, shared by the module's cases."""
    return seed_showtime(stack)


async def post_rejected(
    stack: ApiStack,
    body: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    expected_status: int = 422,
    content_type: str | None = "application/json",
) -> Any:
    """POST /book-tickets, assert the status and that no command was sent.

    The request has no Content-Type header when ``content_type`` is None.
    """
    before = await command_end_offsets(stack.settings)
    if content is None:
        content = json.dumps(body).encode()
    all_headers = {"content-type": content_type} if content_type else {}
    all_headers.update(headers or {})
    response = await stack.client.post(
        "/book-tickets", content=content, headers=all_headers
    )
    after = await command_end_offsets(stack.settings)

    assert response.status_code == expected_status, response.text
    assert after == before
    return response.json()


def errors_by_loc(
    detail: list[dict[str, Any]],
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Return validation error entries keyed by their location."""
    return {tuple(error["loc"]): error for error in detail}


class TestSeatMapValidation:
    @pytest.mark.parametrize(
        ("seat", "reason"),
        [
            ("Z99", "not on this auditorium's seat map"),
            ("A0", "invalid seat id"),
            ("a1", "write it in capitals"),
            ("B5", "aisle or gap"),
            ("M3", "not on this auditorium's seat map"),
            ("W1", "wheelchair space: request it in wheelchairSpaces"),
        ],
    )
    async def test_bad_seat_is_named_with_reason(
        self, stack: ApiStack, showtime: dict[str, Any], seat: str, reason: str
    ) -> None:
        body = booking_body(showtime["_id"], "A1", seat)

        detail = (await post_rejected(stack, body))["detail"]

        [error] = detail
        assert error["loc"] == ["body", "seats", 1]
        assert error["input"] == seat
        assert reason in error["msg"]

    async def test_ordinary_seat_as_wheelchair_space(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(showtime["_id"], "A1", wheelchairSpaces=["W2", "A2"])

        [error] = (await post_rejected(stack, body))["detail"]

        assert error["loc"] == ["body", "wheelchairSpaces", 1]
        assert error["input"] == "A2"
        assert "not a wheelchair space" in error["msg"]

    async def test_every_bad_seat_is_listed(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(showtime["_id"], "Z99", "A1", "a1", "B5")

        detail = (await post_rejected(stack, body))["detail"]

        assert [error["loc"] for error in detail] == [
            ["body", "seats", 0],
            ["body", "seats", 2],
            ["body", "seats", 3],
        ]

    async def test_unknown_showtime_is_422(self, stack: ApiStack) -> None:
        showtime_id = new_id()

        [error] = (await post_rejected(stack, booking_body(showtime_id, "A1")))[
            "detail"
        ]

        assert error["loc"] == ["body", "showtimeId"]
        assert error["input"] == showtime_id
        assert "not found" in error["msg"]

    async def test_started_showtime_is_422(self, stack: ApiStack) -> None:
        started = seed_showtime(stack, startsAt=datetime(2020, 1, 1, 19, tzinfo=UTC))

        [error] = (await post_rejected(stack, booking_body(started["_id"], "A1")))[
            "detail"
        ]

        assert error["loc"] == ["body", "showtimeId"]
        assert "bookings are closed" in error["msg"]


class TestSeatLists:
    async def test_empty_seats_is_422(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        [error] = (await post_rejected(stack, booking_body(showtime["_id"])))["detail"]

        assert error["loc"] == ["body", "seats"]
        assert "at least one seat" in error["msg"]

    async def test_repeated_seat_is_rejected(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(showtime["_id"], "K1", "K1")

        [error] = (await post_rejected(stack, body))["detail"]

        assert error["loc"] == ["body", "seats", 1]
        assert error["input"] == "K1"
        assert "more than once" in error["msg"]

    async def test_case_and_space_variants_are_rejected(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(showtime["_id"], "K1", "k1", " K1")

        detail = (await post_rejected(stack, body))["detail"]

        by_loc = errors_by_loc(detail)
        assert set(by_loc) == {("body", "seats", 1), ("body", "seats", 2)}
        assert by_loc[("body", "seats", 2)]["input"] == " K1"

    async def test_eleven_distinct_seats_over_limit(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        seats = [f"K{number}" for number in range(1, 12)]

        [error] = (await post_rejected(stack, booking_body(showtime["_id"], *seats)))[
            "detail"
        ]

        assert error["loc"] == ["body", "seats"]
        assert "11 entries in seats, at most 10" in error["msg"]

    @pytest.mark.parametrize("field", ["seats", "wheelchairSpaces"])
    async def test_list_over_hard_cap_reports_booking_limit(
        self, stack: ApiStack, showtime: dict[str, Any], field: str
    ) -> None:
        entries = [f"K{number}" for number in range(101)]
        body = booking_body(showtime["_id"], "A1", **{field: entries})

        [error] = (await post_rejected(stack, body))["detail"]

        limit = stack.settings.MAX_SEATS_PER_BOOKING
        assert error["loc"] == ["body", field]
        assert error["type"] == "too_long"
        assert f"101 entries in {field}, at most {limit} " in error["msg"]
        assert "100" not in error["msg"]
        assert isinstance(error["input"], list)
        assert error["input"][:3] == ["K0", "K1", "K2"]
        assert error["input"][-1] == "..."
        assert len(json.dumps(error["input"])) <= MAX_INPUT_CHARS

    async def test_seats_and_spaces_over_limit_name_both(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        seats = [f"K{number}" for number in range(1, 10)]
        body = booking_body(showtime["_id"], *seats, wheelchairSpaces=["W1", "W2"])

        [error] = (await post_rejected(stack, body))["detail"]

        assert error["loc"] == ["body"]
        assert "11 seats requested, at most 10" in error["msg"]
        assert "9 in seats" in error["msg"]
        assert "2 in wheelchairSpaces" in error["msg"]
        assert error["input"] == {"seats": seats, "wheelchairSpaces": ["W1", "W2"]}

    async def test_ten_entries_of_one_seat_rejected(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(showtime["_id"], *["K1"] * 10)

        detail = (await post_rejected(stack, body))["detail"]

        assert [error["loc"][2] for error in detail] == list(range(1, 10))
        assert all(error["input"] == "K1" for error in detail)

    async def test_same_id_in_both_lists_rejected(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(showtime["_id"], "W1", wheelchairSpaces=["W1"])

        detail = (await post_rejected(stack, body))["detail"]

        by_loc = errors_by_loc(detail)
        assert "wheelchair space" in by_loc[("body", "seats", 0)]["msg"]
        assert "more than once" in by_loc[("body", "wheelchairSpaces", 0)]["msg"]

    async def test_long_seat_entry_is_422(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(showtime["_id"], "A" * 9)

        [error] = (await post_rejected(stack, body))["detail"]

        assert error["loc"] == ["body", "seats", 0]
        assert error["type"] == "string_too_long"


class TestUnknownFields:
    @pytest.mark.parametrize(
        ("field", "value"),
        [("tiket_type", "child"), ("discount", 100), ("Idempotency_Key", "abc")],
    )
    async def test_unknown_field_is_named(
        self, stack: ApiStack, showtime: dict[str, Any], field: str, value: Any
    ) -> None:
        body = booking_body(showtime["_id"], "A1", "A2", **{field: value})

        [error] = (await post_rejected(stack, body))["detail"]

        assert error["loc"] == ["body", field]
        assert error["type"] == "extra_forbidden"
        assert error["input"] == value

    async def test_snake_case_name_is_unknown(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = {
            "showtime_id": showtime["_id"],
            "seats": ["A1"],
            "paymentMethod": "card",
        }

        detail = (await post_rejected(stack, body))["detail"]

        locs = {tuple(error["loc"]) for error in detail}
        assert ("body", "showtime_id") in locs
        assert ("body", "showtimeId") in locs


class TestRepeatedKeys:
    async def test_repeated_body_key_is_422(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        content = (
            f'{{"showtimeId": "{showtime["_id"]}", "seats": ["Z99"], '
            '"seats": ["B4"], "paymentMethod": "card"}'
        ).encode()

        [error] = (await post_rejected(stack, content=content))["detail"]

        assert error["loc"] == ["body", "seats"]
        assert error["type"] == "duplicate_key"
        assert 'key "seats" occurs 2 times' in error["msg"]
        assert error["input"] == [["Z99"], ["B4"]]

    async def test_repeated_nested_key_is_located(self, stack: ApiStack) -> None:
        content = b'[{"a": 1}, {"b": 1, "b": NaN, "b": 3}]'

        detail = (await post_rejected(stack, content=content))["detail"]

        by_loc = errors_by_loc(detail)
        assert set(by_loc) == {("body", 1, "b")}
        assert "3 times" in by_loc[("body", 1, "b")]["msg"]
        assert by_loc[("body", 1, "b")]["input"] == [1, "NaN", 3]

    async def test_repeats_and_nan_reported_together(self, stack: ApiStack) -> None:
        content = b'{"seats": [NaN], "x": 1, "x": 2}'

        detail = (await post_rejected(stack, content=content))["detail"]

        assert [error["loc"] for error in detail] == [
            ["body", "x"],
            ["body", "seats", 0],
        ]


class TestNumbers:
    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309"])
    async def test_non_finite_literal_is_422(
        self, stack: ApiStack, showtime: dict[str, Any], literal: str
    ) -> None:
        content = (
            f'{{"showtimeId": "{showtime["_id"]}", "seats": ["A1", {literal}], '
            f'"paymentMethod": "card"}}'
        ).encode()

        [error] = (await post_rejected(stack, content=content))["detail"]

        assert error["loc"] == ["body", "seats", 1]
        assert error["input"] == literal
        assert literal in error["msg"]

    @pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
    async def test_non_finite_text_is_not_a_seat(
        self, stack: ApiStack, showtime: dict[str, Any], text: str
    ) -> None:
        [error] = (
            await post_rejected(stack, booking_body(showtime["_id"], "A1", text))
        )["detail"]

        assert error["loc"] == ["body", "seats", 1]
        assert error["input"] == text

    async def test_number_as_showtime_id_is_422(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(str(2**63), "A1")
        body["showtimeId"] = 2**63

        [error] = (await post_rejected(stack, body))["detail"]

        assert error["loc"] == ["body", "showtimeId"]
        assert error["input"] == 2**63

    @pytest.mark.parametrize("sign", ["", "-"])
    async def test_5000_digit_number_is_422(
        self, stack: ApiStack, showtime: dict[str, Any], sign: str
    ) -> None:
        number = sign + "9" * 5000
        content = (
            f'{{"showtimeId": "{showtime["_id"]}", "seats": ["A1", {number}], '
            '"paymentMethod": "card"}'
        ).encode()

        [error] = (await post_rejected(stack, content=content))["detail"]

        assert error["loc"] == ["body", "seats", 1]
        assert error["type"] == "int_parsing_size"
        assert "number has 5000 digits, more than the maximum of 4300" in error["msg"]
        assert "sys." not in error["msg"]
        assert error["input"].startswith(number[:100])

    async def test_deeply_nested_body_is_422(self, stack: ApiStack) -> None:
        content = b"[" * 30_000 + b"]" * 30_000

        [error] = (await post_rejected(stack, content=content))["detail"]

        assert error["type"] == "json_invalid"
        assert "nested too deeply" in error["msg"]

    async def test_malformed_json_names_position(self, stack: ApiStack) -> None:
        [error] = (await post_rejected(stack, content=b'{"seats": ["A1",]}'))["detail"]

        assert error["loc"] == ["body", 16]
        assert error["msg"].startswith("invalid JSON: ")

    async def test_invalid_utf8_is_422(self, stack: ApiStack) -> None:
        [error] = (await post_rejected(stack, content=b'{"seats": ["\xff"]}'))["detail"]

        assert error["type"] == "json_invalid"

    async def test_lone_surrogate_seat_is_echoed_safely(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        content = (
            f'{{"showtimeId": "{showtime["_id"]}", "seats": ["\\ud800"], '
            '"paymentMethod": "card"}'
        ).encode()

        [error] = (await post_rejected(stack, content=content))["detail"]

        assert error["loc"] == ["body", "seats", 0]
        assert error["input"] == "?"

    async def test_lone_surrogate_field_is_echoed_safely(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = json.dumps(booking_body(showtime["_id"], "A1"))
        content = (body[:-1] + ', "\\udfff": 1}').encode()

        [error] = (await post_rejected(stack, content=content))["detail"]

        # pydantic rejects the key itself, before it can tell the field is unknown.
        assert error["loc"] == ["body"]
        assert error["type"] == "string_unicode"
        assert error["input"] == "?"

    @pytest.mark.parametrize(
        "path",
        [
            "/movies/1000000000000000000000000000000000000000000",
            "/showtimes/9223372036854775808",
            "/showtimes/-1/seats",
            "/tickets/0",
        ],
    )
    async def test_number_as_id_is_422(self, stack: ApiStack, path: str) -> None:
        response = await stack.client.get(path)

        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["input"] == path.split("/")[2]

    @pytest.mark.parametrize("name", ["page", "limit"])
    @pytest.mark.parametrize("value", [str(2**63), "-1", "0", "9" * 5000, "NaN", "1e3"])
    async def test_out_of_range_paging_is_422(
        self, stack: ApiStack, name: str, value: str
    ) -> None:
        response = await stack.client.get("/movies", params={name: value})

        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", name]
        assert len(str(error["input"])) <= MAX_INPUT_CHARS + len("...")

    async def test_largest_page_is_served(self, stack: ApiStack) -> None:
        response = await stack.client.get(
            "/movies", params={"page": 10_000, "limit": 100}
        )

        assert response.status_code == 200
        assert response.json()["items"] == []


class TestQueryParameters:
    @pytest.mark.parametrize(
        ("path", "name", "values"),
        [
            ("/movies", "genre", ["Drama", "Action"]),
            ("/movies", "page", ["1", "2", "3"]),
            ("/showtimes", "date", ["2031-05-01", "2031-05-01"]),
            ("/health", "verbose", ["1", "0"]),
        ],
    )
    async def test_repeated_query_parameter_is_422(
        self, stack: ApiStack, path: str, name: str, values: list[str]
    ) -> None:
        response = await stack.client.get(path, params=[(name, v) for v in values])

        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", name]
        assert f"{len(values)} times" in error["msg"]
        assert error["input"] == values


class TestOtherFields:
    @pytest.mark.parametrize(
        "method", ["", "x" * 41, "card payment", "card\n", "кредит", None, 7]
    )
    async def test_invalid_payment_method_is_422(
        self, stack: ApiStack, showtime: dict[str, Any], method: Any
    ) -> None:
        body = booking_body(showtime["_id"], "A1", paymentMethod=method)

        [error] = (await post_rejected(stack, body))["detail"]

        assert error["loc"] == ["body", "paymentMethod"]

    @pytest.mark.parametrize("key", ["", "k" * 101, "has space", "slash/key"])
    async def test_invalid_idempotency_key_is_422(
        self, stack: ApiStack, showtime: dict[str, Any], key: str
    ) -> None:
        body = booking_body(showtime["_id"], "A1")

        [error] = (await post_rejected(stack, body, headers={"Idempotency-Key": key}))[
            "detail"
        ]

        assert error["loc"] == ["header", "Idempotency-Key"]

    @pytest.mark.parametrize("body", [[], "A1", 1, None, {}])
    async def test_body_not_an_object_is_422(self, stack: ApiStack, body: Any) -> None:
        await post_rejected(stack, body)


class TestContentType:
    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", "application/x-www-form-urlencoded", "application/xml"],
    )
    async def test_body_not_json_is_415(
        self, stack: ApiStack, showtime: dict[str, Any], content_type: str
    ) -> None:
        content = json.dumps(booking_body(showtime["_id"], "A1")).encode()

        detail = (
            await post_rejected(
                stack, content=content, content_type=content_type, expected_status=415
            )
        )["detail"]

        assert f"Content-Type {content_type} is not supported" in detail
        assert "send Content-Type: application/json" in detail

    async def test_body_without_content_type_is_415(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        content = json.dumps(booking_body(showtime["_id"], "A1")).encode()

        detail = (
            await post_rejected(
                stack, content=content, content_type=None, expected_status=415
            )
        )["detail"]

        assert "no Content-Type header" in detail
        assert "send Content-Type: application/json" in detail

    @pytest.mark.parametrize(
        "content_type",
        ["application/json; charset=utf-8", "application/vnd.api+json"],
    )
    async def test_json_media_types_reach_validation(
        self, stack: ApiStack, showtime: dict[str, Any], content_type: str
    ) -> None:
        body = booking_body(showtime["_id"], "Z99")

        [error] = (await post_rejected(stack, body, content_type=content_type))[
            "detail"
        ]

        assert error["loc"] == ["body", "seats", 0]

    async def test_empty_body_without_content_type_is_422(
        self, stack: ApiStack
    ) -> None:
        [error] = (await post_rejected(stack, content=b"", content_type=None))["detail"]

        assert error["loc"] == ["body"]
        assert error["type"] == "missing"


class TestBodySize:
    async def test_two_megabyte_body_is_413(self, stack: ApiStack) -> None:
        content = b"9" * (2 * 1024 * 1024)

        detail = (await post_rejected(stack, content=content, expected_status=413))[
            "detail"
        ]

        assert "too large" in detail
        assert str(stack.settings.API_MAX_BODY_BYTES) in detail

    async def test_chunked_body_over_limit_is_413(self, stack: ApiStack) -> None:
        chunk = b" " * 16_384

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield chunk

        response = await stack.client.post(
            "/book-tickets",
            content=chunks(),
            headers={"content-type": "application/json"},
        )

        assert response.status_code == 413
        assert "more than" in response.json()["detail"]

    async def test_body_under_limit_reaches_parser(
        self, stack: ApiStack, showtime: dict[str, Any]
    ) -> None:
        body = booking_body(showtime["_id"], "A1")
        padded = json.dumps(body).encode() + b" " * 60_000

        [error] = (
            await post_rejected(stack, content=padded + b"x", expected_status=422)
        )["detail"]

        assert error["type"] == "json_invalid"


class TestErrorEntries:
    def test_non_finite_floats_become_names(self) -> None:
        for value, name in [
            (math.nan, "NaN"),
            (math.inf, "Infinity"),
            (-math.inf, "-Infinity"),
        ]:
            entry = validation_entry({"loc": ("body", "x"), "msg": "m", "input": value})
            assert entry["input"] == name

    def test_long_input_is_cut(self) -> None:
        entry = validation_entry({"loc": ("body",), "msg": "m", "input": "x" * 10_000})

        assert len(entry["input"]) == MAX_INPUT_CHARS + len("...")
        assert entry["input"].endswith("...")

    def test_long_list_keeps_leading_items(self) -> None:
        entry = validation_entry(
            {"loc": ("body",), "msg": "m", "input": list(range(1000))}
        )

        assert entry["input"][:3] == [0, 1, 2]
        assert entry["input"][-1] == "..."
        assert len(json.dumps(entry["input"])) <= MAX_INPUT_CHARS

    def test_many_short_items_end_in_ellipsis(self) -> None:
        entry = validation_entry(
            {"loc": ("body",), "msg": "m", "input": list(range(60))}
        )

        assert entry["input"] == [*range(MAX_INPUT_ITEMS), "..."]

    def test_huge_integer_is_described(self) -> None:
        huge = 10**6000

        entry = validation_entry({"loc": ("body",), "msg": "m", "input": huge})

        assert entry["input"].startswith("integer of about 6000 digits")

    def test_nested_input_with_nan_is_encodable(self) -> None:
        value = {"a": [math.nan, {"b": "\ud800"}], "c": b"\xff"}

        entry = validation_entry({"loc": ("body",), "msg": "m", "input": value})

        assert json.loads(json.dumps(entry, allow_nan=False)) == entry


class TestFailureLog:
    def test_repeats_within_interval_are_counted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        failures = FailureLog("Redis", interval_s=60.0)
        error = ConnectionError("refused")

        with caplog.at_level(logging.WARNING, logger="read_api.read_models"):
            for _ in range(5):
                failures.log(logging.WARNING, "GET k", error)
            failures.last_logged -= 61.0
            failures.log(logging.WARNING, "GET k", error)

        messages = [record.getMessage() for record in caplog.records]
        assert len(messages) == 2
        assert "(0 similar failures" in messages[0]
        assert "(4 similar failures" in messages[1]


class TestFailures:
    async def test_unexpected_error_is_500_json(self, stack: ApiStack) -> None:
        broken = seed_showtime(stack)
        stack.database["showtimes"].update_one(
            {"_id": broken["_id"]}, {"$unset": {"capacity": ""}}
        )

        async with running_api(stack.settings, raise_app_exceptions=False) as client:
            response = await client.get(f"/showtimes/{broken['_id']}")

        assert response.status_code == 500
        assert response.json() == {"detail": "internal server error"}

    async def test_unknown_route_is_404(self, stack: ApiStack) -> None:
        response = await stack.client.get("/nowhere")

        assert response.status_code == 404

    async def test_wrong_method_is_405(self, stack: ApiStack) -> None:
        response = await stack.client.get("/book-tickets")

        assert response.status_code == 405

    async def test_redis_down_reads_fall_back_to_mongodb(self, stack: ApiStack) -> None:
        movie = seed_movie(stack, title="Redis is down")
        settings = stack.settings.model_copy(
            update={"REDIS_URL": closed_port_url("redis")}
        )

        async with running_api(settings) as client:
            movie_response = await client.get(f"/movies/{movie['_id']}")
            list_response = await client.get(
                "/movies", params={"title": "Redis is down"}
            )
            health = await client.get("/health")

        assert movie_response.status_code == 200
        assert movie_response.json()["title"] == "Redis is down"
        assert list_response.json()["total"] == 1
        assert health.status_code == 503
        assert health.json()["checks"]["redis"] != "ok"
        assert health.json()["checks"]["mongodb"] == "ok"

    async def test_mongodb_down_is_503(self, stack: ApiStack) -> None:
        settings = stack.settings.model_copy(
            update={"MONGODB_URL": closed_port_url("mongodb")}
        )

        async with running_api(settings) as client:
            response = await client.get(f"/movies/{new_id()}")
            health = await client.get("/health")

        assert response.status_code == 503
        assert "MongoDB" in response.json()["detail"]
        assert health.status_code == 503
        assert health.json()["checks"]["mongodb"] != "ok"

    async def test_kafka_paused_health_is_503(
        self, service_urls: dict[str, str], tmp_path: Path
    ) -> None:
        broker = embedded.start_kafka(tmp_path)
        try:
            urls = {**service_urls, "kafka": broker.url}
            async with open_stack(urls) as stack:
                healthy = await stack.client.get("/health")
                os.kill(broker.process.pid, signal.SIGSTOP)
                try:
                    paused = await stack.client.get("/health")
                finally:
                    os.kill(broker.process.pid, signal.SIGCONT)
                resumed = await stack.client.get("/health")
        finally:
            broker.stop()

        assert healthy.status_code == 200
        assert healthy.json()["checks"]["kafka"] == "ok"
        assert paused.status_code == 503
        assert paused.json()["status"] == "unavailable"
        assert paused.json()["checks"]["kafka"].startswith("timed out after")
        assert paused.json()["checks"]["redis"] == "ok"
        assert resumed.status_code == 200


def closed_port_url(scheme: str) -> str:
    """Return a URL on 127.0.0.1 at a port where nothing listens."""
    return f"{scheme}://127.0.0.1:{free_port()}"
