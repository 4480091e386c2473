"""The orjson provider writes the JSON documents Flask's own provider writes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

from flotilla_kit.json_provider import OrjsonProvider


@dataclass
class Line:
    product_id: int
    price: Decimal
    added_at: datetime


def make_app(debug: bool = False) -> Flask:
    app = Flask("json-test")
    app.json = OrjsonProvider(app)
    app.debug = debug
    return app


def flask_dumps(app: Flask, obj: Any) -> str:
    """What Flask's own provider writes for ``obj`` in the same app."""
    return DefaultJSONProvider(app).dumps(obj)


def keys_in_order(document: str) -> list[str]:
    """The object keys of ``document`` as written, each object's once it closes (inner objects first)."""
    found: list[str] = []

    def record(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found.extend(key for key, _ in pairs)
        return dict(pairs)

    json.loads(document, object_pairs_hook=record)
    return found


DOCUMENTS = {
    "nested": {"order": {"items": [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}], "ok": True}},
    "unicode": {"name": "Crème brûlée ☕ 寿司 🍣", "quote": 'say "hi"\n\t\\', "empty": ""},
    "datetimes": {
        "utc": datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC),
        "offset": datetime(2024, 2, 29, 23, 59, 58, tzinfo=timezone(timedelta(hours=2))),
        "naive": datetime(2024, 2, 29, 23, 59, 58, 123456),
        "day": date(1999, 12, 31),
    },
    "decimal": {"price": Decimal("12.50"), "tiny": Decimal("1E-7"), "values": [Decimal("-0.0")]},
    "uuid": {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "ids": [uuid.UUID(int=0)]},
    "dataclass": {"line": Line(7, Decimal("9.99"), datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))},
    "int keys": {"by_id": {1: "one", 2: "two", 3: "three"}},
    "scalars": [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, "x"],
}


@pytest.mark.parametrize("obj", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_the_document_is_the_one_flask_writes(obj: Any) -> None:
    app = make_app()
    assert json.loads(app.json.dumps(obj)) == json.loads(flask_dumps(app, obj))


def test_dates_are_http_dates_as_in_flask() -> None:
    app = make_app()
    written = json.loads(
        app.json.dumps({"at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "on": date(2024, 1, 2)})
    )
    assert written == {"at": "Tue, 02 Jan 2024 03:04:05 GMT", "on": "Tue, 02 Jan 2024 00:00:00 GMT"}


@pytest.mark.parametrize(
    "obj",
    [
        {"b": 1, "a": {"z": 1, "y": 2, "é": 3, "Z": 4}, "A": [{"d": 1, "c": 2}]},
        {"by_id": {10: "ten", 9: "nine", 100: "hundred", -1: "minus one"}},
    ],
    ids=["text keys", "int keys"],
)
def test_keys_are_written_in_the_order_flask_sorts_them(obj: Any) -> None:
    app = make_app()
    assert keys_in_order(app.json.dumps(obj)) == keys_in_order(flask_dumps(app, obj))


def test_keys_keep_their_insertion_order_when_sorting_is_off() -> None:
    app = make_app()
    app.json.sort_keys = False  # type: ignore[attr-defined]
    obj = {"b": 1, "a": 2, "c": {"z": 1, "y": 2}}
    assert keys_in_order(app.json.dumps(obj)) == ["z", "y", "b", "a", "c"]


def test_an_integer_beyond_64_bits_encodes_as_in_flask() -> None:
    app = make_app()
    obj = {"big": 2**64, "negative": -(2**70), "nested": [{"n": 10**30}]}
    written = app.json.dumps(obj)
    assert json.loads(written) == obj == json.loads(flask_dumps(app, obj))


def test_an_unknown_type_raises_type_error() -> None:
    app = make_app()
    with pytest.raises(TypeError):
        app.json.dumps({"what": object()})
    with pytest.raises(TypeError):
        app.json.response({"what": object()})


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_a_response_is_flasks_bytes_with_a_final_newline(debug: bool) -> None:
    app = make_app(debug=debug)
    obj = {"order": {"items": [1, 2], "id": "o-1"}, "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}
    with app.app_context():
        response = app.json.response(obj)
        expected = DefaultJSONProvider(app).response(obj)
    assert isinstance(response, Response)  # the app's response class
    assert isinstance(expected, Response)
    body = response.get_data()
    assert body.endswith(b"}\n")
    assert response.mimetype == "application/json"
    assert body == expected.get_data()
    assert (b'\n  "at": ' in body) is debug  # indented in debug only


def test_a_views_dict_answer_is_written_by_the_provider_in_utf8() -> None:
    app = make_app()

    @app.get("/doc")
    def doc() -> dict[str, Any]:
        return {"price": Decimal("1.10"), "name": "Café"}

    response = app.test_client().get("/doc")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_data() == '{"name":"Café","price":"1.10"}\n'.encode()
