"""What an order's trace must hold, wherever it is read back (loopback Jaeger or the node's)."""

from __future__ import annotations

from tests.support.jaeger import Span


def ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    """The span's parent, its parent's parent... up to the trace's root."""
    chain = []
    current = span
    while current.parent_id in by_id:
        current = by_id[current.parent_id]
        chain.append(current)
    return chain


def is_sql(span: Span) -> bool:
    """A span of one SQL statement (SQLAlchemy's instrumentation)."""
    return span.kind == "client" and ("db.system" in span.tags or "db.system.name" in span.tags)


def check_order_trace(spans: list[Span], caller_span: str) -> dict[str, Span]:
    """Assert the shape of one ``POST /orders`` trace; returns its main spans by role.

    Every span links to a parent inside the trace but one, orders' request, whose parent is the
    caller's span; the catalog's reservation request sits under orders' call to the catalog, its
    SQL under it; a token fetched from users (not cached) holds users' request and its SQL.
    """
    by_id = {span.span_id: span for span in spans}
    [root] = [span for span in spans if span.parent_id not in by_id]
    assert (root.service, root.name, root.kind) == ("orders", "POST /orders", "server"), root
    assert root.parent_id == caller_span, f"orders' request is not a child of the caller's span: {root}"
    assert {span.trace_id for span in spans} == {root.trace_id}

    def one(service: str, name: str) -> Span:
        found = [span for span in spans if span.service == service and span.name == name]
        assert found, f"no span {name!r} of {service} in {sorted((s.service, s.name) for s in spans)}"
        return found[0]

    call = one("orders", "POST catalog")
    assert root in ancestors(call, by_id)
    reservation = one("catalog", "POST /reservations")
    assert reservation.kind == "server"
    hop = by_id[reservation.parent_id or ""]
    assert (hop.service, hop.kind) == ("orders", "client"), f"the reservation's parent is {hop}"
    assert call in ancestors(hop, by_id)
    catalog_sql = [span for span in spans if span.service == "catalog" and is_sql(span)]
    assert catalog_sql and all(reservation in ancestors(span, by_id) for span in catalog_sql)
    orders_sql = [span for span in spans if span.service == "orders" and is_sql(span)]
    assert orders_sql and all(root in ancestors(span, by_id) for span in orders_sql)

    tokens = [span for span in spans if span.name == "client credentials token"]
    assert tokens and all(call in ancestors(token, by_id) for token in tokens)
    fetched = [token for token in tokens if token.tags.get("flotilla.token.cached") is False]
    if fetched:
        issued = one("users", "POST /oauth/token")
        assert fetched[0] in ancestors(issued, by_id)
    return {"root": root, "call": call, "reservation": reservation, "hop": hop}
