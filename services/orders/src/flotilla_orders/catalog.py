"""The catalog as orders sees it: reserve, commit and release stock over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from flotilla_kit.http_client import Reply, ServiceClient, UpstreamUnavailable
from flotilla_kit.problems import Problem

log = logging.getLogger("flotilla.orders.catalog")


class Refused(Problem):
    """The catalog refused the reservation itself (stock, unknown product): final for this order."""

    def __init__(self, response: Reply) -> None:
        body = _problem_body(response)
        super().__init__(
            response.status_code,
            str(body.get("type", "")).rsplit("/", 1)[-1] or "reservation-refused",
            str(body.get("detail", "The catalog refused the reservation.")),
            title=str(body.get("title", "")) or None,
            **{k: v for k, v in body.items() if k not in {"type", "title", "status", "detail"}},
        )


class ReservationLost(Problem):
    """The reservation was released or expired before the order committed it; a retry may work."""

    def __init__(self, key: str) -> None:
        super().__init__(
            503,
            "reservation-expired",
            f"The stock reservation {key} expired before the order was completed; retry the order.",
            headers={"Retry-After": "1"},
        )


class UpstreamError(Problem):
    """The catalog answered in a way orders cannot use (a bug or misconfiguration)."""

    def __init__(self, response: Reply) -> None:
        super().__init__(
            502,
            "upstream-error",
            f"The catalog service answered {response.status_code} unexpectedly.",
            target="catalog",
        )


def _problem_body(response: Reply) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Catalog:
    """Reservation calls; each is idempotent by key, so each may be retried."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def reserve(self, key: str, lines: Sequence[tuple[int, int]]) -> dict[str, Any]:
        """Take stock for every line at once, all in one currency; ``Refused`` when the catalog says no.

        One call: the catalog commits the reservation as it makes it and refuses mixed currencies
        first. A replay of the key answers the reservation as it is (an earlier attempt's may
        still be only held).
        """
        lines_json = [{"product_id": p, "quantity": q} for p, q in lines]
        response = self.client.request(
            "POST",
            "/reservations",
            json={"key": key, "items": lines_json, "commit": True, "same_currency": True},
            idempotent=True,
        )
        if response.status_code in (200, 201):
            body: dict[str, Any] = response.json()
            return body
        if response.status_code in (409, 422):
            raise Refused(response)
        raise UpstreamError(response)

    def commit(self, key: str) -> dict[str, Any]:
        """Make the held stock permanent; ``ReservationLost`` when it was released meanwhile."""
        response = self.client.request("POST", f"/reservations/{key}/commit", idempotent=True)
        if response.status_code == 200 and response.json().get("status") == "committed":
            body: dict[str, Any] = response.json()
            return body
        if response.status_code in (200, 409):
            raise ReservationLost(key)
        raise UpstreamError(response)

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The reservation under ``key``, or None when the catalog has none."""
        response = self.client.request("GET", f"/reservations/{key}")
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        if response.status_code == 404:
            return None
        raise UpstreamError(response)

    def release_quietly(self, key: str) -> None:
        """Give the stock back if anything was held; failures are left to the catalog's expiry."""
        try:
            response = self.client.request("POST", f"/reservations/{key}/release", idempotent=True)
        except UpstreamUnavailable as exc:
            log.warning("release failed; the reservation will expire", extra={"key": key, "error": str(exc)})
            return
        if response.status_code != 200:
            log.warning("release refused", extra={"key": key, "status": response.status_code})
