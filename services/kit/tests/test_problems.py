"""Flattening validation messages into named field errors."""

from __future__ import annotations

from flotilla_kit.problems import field_errors


def test_nested_webargs_messages_become_dotted_fields() -> None:
    messages = {
        "json": {
            "items": {"0": {"quantity": ["Not a valid integer."]}},
            "email": ["Not a valid email address."],
        },
        "headers": {"Idempotency-Key": ["Missing data for required field."]},
    }
    assert sorted(field_errors(messages), key=lambda e: e["field"]) == [
        {"field": "Idempotency-Key", "location": "headers", "message": "Missing data for required field."},
        {"field": "email", "location": "json", "message": "Not a valid email address."},
        {"field": "items.0.quantity", "location": "json", "message": "Not a valid integer."},
    ]


def test_whole_body_errors_name_the_body() -> None:
    assert list(field_errors({"json": {"_schema": ["Invalid input type."]}})) == [
        {"field": "_schema", "location": "json", "message": "Invalid input type."}
    ]
    assert list(field_errors({"json": ["Invalid JSON body."]})) == [
        {"field": "(body)", "location": "json", "message": "Invalid JSON body."}
    ]
