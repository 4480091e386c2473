"""Schema fuzzing: schemathesis against each service's own ``/openapi.json``, on gunicorn and PostgreSQL.

Every operation gets schemathesis' coverage cases (boundary values; missing, extra and wrong-typed
fields and parameters; strings breaking a pattern...) and ``MAX_EXAMPLES`` derandomized Hypothesis
cases from each of its positive and negative strategies. Every response goes through ``CHECKS``:
no 5xx, and the status, content type, headers and body as documented, valid input accepted and
invalid input refused. Failures are gathered over a group of operations and reported together.

The cases are sent from a loop rather than through ``schema.parametrize()``: that makes one test
per operation and names its argument ``case``, the name of this suite's record fixture.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis import APIOperation, CheckContext, GenerationMode
from schemathesis import Case as SchemathesisCase
from schemathesis import Response as ApiResponse
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.errors import FailureGroup
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from flotilla_kit.schemas import MAX_ID
from tests.support.cases import Case
from tests.support.platform import Platform

Generated = SchemathesisCase[Any]
Operation = APIOperation[Any, Any, Any, Any]

MAX_EXAMPLES = 25
"""Hypothesis cases per operation and mode, on top of the coverage cases (a fixed set)."""
PROBLEM = "application/problem+json"
PRODUCTS = 100
"""Stocked products: as many as an order or a reservation may have lines, so each line gets its own."""
STOCK = 10**9


def unknown_query_parameters_refused(
    _ctx: CheckContext, response: ApiResponse, case: Generated
) -> bool | None:
    """Stricter than schemathesis, which lets an API ignore them: an unknown query parameter is refused."""
    sent = {
        name for name, _value in parse_qsl(urlsplit(str(response.request.url)).query, keep_blank_values=True)
    }
    unknown = sent - {parameter.name for parameter in case.operation.query}
    if unknown and response.status_code < 400:
        raise AssertionError(f"unknown query parameters {sorted(unknown)} got {response.status_code}")
    return None


# Every schemathesis check that judges one response, and one of ours. Left out: use_after_free and
# ensure_resource_availability, which need its stateful phase (not run here), and ignored_auth,
# which replays each case without credentials (the token tests' subject).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    unknown_query_parameters_refused,
]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
FUZZING = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same cases on every run and in CI
    database=None,
    deadline=None,
    # A failure is recorded, not raised, so there is nothing to shrink; and the schemas' few
    # required-field combinations trip the "too much filtering" health check for no fault of theirs.
    phases=[hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
    verbosity=hypothesis.Verbosity.quiet,
)


@dataclass
class World:
    """Real rows that steer valid cases to real resources: positive paths reach real stock."""

    stocked: list[int] = field(default_factory=list)
    products: list[int] = field(default_factory=list)
    reservations: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Group:
    """Operations of one service fuzzed under one token."""

    name: str
    service: str
    paths: str
    token: Callable[[Platform], str]
    prepare: Callable[[Platform, str], World] = lambda _platform, _token: World()


@dataclass
class Outcome:
    """What one group's fuzzing saw."""

    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def summary(self) -> str:
        classes = Counter({"2xx": 0, "4xx": 0, "5xx": 0})
        for status, count in self.statuses.items():
            classes[f"{status[0]}xx"] += count
        counts = ", ".join(f"{name} {count}" for name, count in sorted(classes.items()))
        return f"{counts}; {len(self.failures)} distinct failures"


def stock_products(platform: Platform, admin: str, count: int, stock: int = STOCK) -> list[int]:
    """``count`` new products with ``stock`` each."""
    ids = []
    with requests.Session() as session:
        for _ in range(count):
            response = session.post(
                f"{platform.catalog.url}/products",
                json={
                    "name": f"Fuzz {uuid.uuid4().hex[:8]}",
                    "price_cents": 100,
                    "currency": "EUR",
                    "stock": stock,
                },
                headers={"Authorization": f"Bearer {admin}"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
            ids.append(int(response.json()["id"]))
    return ids


def products_world(platform: Platform, admin: str) -> World:
    # A few products for GET/PATCH/DELETE /products/{id}; the DELETEs run last.
    return World(products=stock_products(platform, admin, 5))


def reservations_world(platform: Platform, service: str) -> World:
    stocked = stock_products(platform, platform.admin_token(), PRODUCTS)
    keys = [f"fuzz-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    for key in keys:
        response = requests.post(
            f"{platform.catalog.url}/reservations",
            json={"key": key, "items": [{"product_id": stocked[0], "quantity": 1}]},
            headers={"Authorization": f"Bearer {service}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
    return World(stocked=stocked, reservations=keys)


def orders_world(platform: Platform, customer: str) -> World:
    stocked = stock_products(platform, platform.admin_token(), PRODUCTS)
    response = platform.order(customer, [{"product_id": stocked[0], "quantity": 1}])
    assert response.status_code == 201, response.text
    return World(stocked=stocked, orders=[str(response.json()["id"])])


GROUPS = [
    Group("users, as a customer", "users", r"^/(users|auth|oauth|\.well-known)/", Platform.customer_token),
    Group("catalog products, as the admin", "catalog", r"^/products", Platform.admin_token, products_world),
    Group(
        "catalog reservations, as the orders client",
        "catalog",
        r"^/reservations",
        Platform.service_token,
        reservations_world,
    ),
    Group("orders, as a customer", "orders", r"^/orders", Platform.customer_token, orders_world),
]


def load_schema(url: str, token: str, paths: str) -> Any:
    """The service's own schema, authenticated through its documented ``bearerAuth`` scheme."""
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"bearerAuth": {"bearer": token}}}})
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config).include(path_regex=paths)


def operations(schema: Any) -> list[Operation]:
    """The schema's operations, deletions last (they take away what the others work on)."""
    found = [result.ok() for result in schema.get_all_operations()]
    return sorted(found, key=lambda operation: operation.method.upper() == "DELETE")


def coverage_cases(schema: Any, operation: Operation) -> Iterator[Generated]:
    """Schemathesis' coverage phase for one operation, as its pytest plugin and CLI run it.

    Through their own driver, which is not public API: schemathesis is pinned in requirements-dev.txt.
    """
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=MODES,
        generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
        auth_storage=None,
        override=Override(),
        feedback=FeedbackSources(),
    )
    yield from generator


def positive_at(case: Generated, location: ParameterLocation) -> bool:
    return case.meta is None or not case.meta.is_negative_at(location)


def valid_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def steer(case: Generated, world: World) -> None:
    """Point valid lines and identifiers at rows that exist, one product per line."""
    headers = case.headers
    if headers and "Idempotency-Key" in headers and positive_at(case, ParameterLocation.HEADER):
        # The key is documented as unique per order, which no schema can say: the generated
        # ones repeat, and a repeated key with other items is rightly refused (422).
        headers["Idempotency-Key"] = uuid.uuid4().hex
    body = case.body
    lines = body.get("items") if isinstance(body, dict) else None
    if world.stocked and isinstance(lines, list):
        for index, line in enumerate(lines[: len(world.stocked)]):
            if isinstance(line, dict) and valid_id(line.get("product_id")):
                line["product_id"] = world.stocked[index]
    path = case.path_parameters
    if not path or not positive_at(case, ParameterLocation.PATH):
        return
    if world.products and valid_id(path.get("product_id")):
        path["product_id"] = world.products[int(path["product_id"]) % len(world.products)]
    if world.reservations and "key" in path:
        path["key"] = world.reservations[len(str(path["key"])) % len(world.reservations)]
    if world.orders and "order_id" in path:
        path["order_id"] = world.orders[0]


def send(case: Generated, world: World, session: requests.Session, outcome: Outcome) -> None:
    """Send one case and run the checks on its response."""
    steer(case, world)
    label = case.operation.label
    outcome.requests += 1
    try:
        response = case.call(session=session, timeout=30)
    except requests.RequestException as exc:
        outcome.failures.setdefault((label, type(exc).__name__, 0), f"{case.as_curl_command()}\n{exc}")
        return
    outcome.statuses[str(response.status_code)] += 1
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            key = (label, failure.title, response.status_code)
            outcome.failures.setdefault(key, str(group))


def fuzz(
    schema: Any, operation: Operation, world: World, session: requests.Session, outcome: Outcome
) -> None:
    """Coverage cases, then derandomized Hypothesis cases in each mode."""
    for generated in coverage_cases(schema, operation):
        send(generated, world, session, outcome)
    # Without parameters or a body there is nothing to break: no negative case exists.
    has_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
    for mode in MODES if has_input else [GenerationMode.POSITIVE]:

        @FUZZING
        @hypothesis.given(operation.as_strategy(generation_mode=mode))
        def run(generated: Generated) -> None:
            send(generated, world, session, outcome)

        run()


def describe(failures: dict[tuple[str, str, int], str]) -> str:
    lines = [f"{len(failures)} distinct failures:"]
    lines += [f"  {label}: {title} (status {status})" for label, title, status in sorted(failures)]
    lines += ["", "First example of each:"]
    lines += [re.sub(r"\n{3,}", "\n\n", example) for example in failures.values()]
    return "\n".join(lines)


@pytest.mark.parametrize("group", GROUPS, ids=[group.name for group in GROUPS])
def test_operations_answer_as_documented(platform: Platform, case: Case, group: Group) -> None:
    service = getattr(platform, group.service)
    token = group.token(platform)
    world = group.prepare(platform, token)
    schema = load_schema(service.url, token, group.paths)
    found = operations(schema)
    assert found, f"no operation of {group.service} matches {group.paths}"
    outcome = Outcome()
    with requests.Session() as session:
        for operation in found:
            fuzz(schema, operation, world, session, outcome)
    case.tried(outcome.requests)
    case.saw(f"{len(found)} operations; {outcome.summary()}")
    for label, title, status in sorted(outcome.failures):
        case.saw(f"{label}: {title} ({status})")
    assert not outcome.failures, describe(outcome.failures)


@dataclass(frozen=True)
class Finding:
    """A request fuzzing found answered wrongly once, and the status of its problem document now."""

    what: str
    service: str
    method: str
    path: str
    status: int
    token: Callable[[Platform], str] | None = None
    body: str | None = None
    """Raw JSON text: ``json=`` cannot send an unpaired surrogate."""
    form: dict[str, str] | None = None
    basic: tuple[str, str] | None = None


FINDINGS = [
    Finding(
        "NUL in a JSON string",
        "users",
        "POST",
        "/users/register",
        422,
        body='{"email": "nul@example.com", "password": "long enough", "name": "a\\u0000b"}',
    ),
    Finding(
        "NUL in a PATCH body",
        "users",
        "PATCH",
        "/users/me",
        422,
        Platform.customer_token,
        '{"name": "\\u0000"}',
    ),
    Finding(
        "NUL in a product",
        "catalog",
        "POST",
        "/products",
        422,
        Platform.admin_token,
        '{"name": "a", "description": "\\u0000", "price_cents": 1, "currency": "EUR", "stock": 1}',
    ),
    Finding(
        "NUL in a form field",
        "users",
        "POST",
        "/oauth/token",
        400,
        form={"grant_type": "client_credentials", "client_id": "a\x00", "client_secret": "b"},
    ),
    Finding(
        "NUL in HTTP Basic credentials",
        "users",
        "POST",
        "/oauth/token",
        401,
        form={"grant_type": "client_credentials"},
        basic=("ord\x00ers", "secret"),
    ),
    Finding("NUL in a path", "catalog", "GET", "/reservations/a%00b", 404, Platform.service_token),
    Finding("NUL in a path", "orders", "GET", "/orders/a%00b", 404, Platform.customer_token),
    Finding("NUL in a query parameter", "catalog", "GET", "/products?offset=%00", 422),
    Finding(
        "unpaired surrogate",
        "users",
        "POST",
        "/auth/login",
        422,
        body='{"email": "a@example.com", "password": "\\ud800"}',
    ),
    Finding(
        "unpaired surrogate",
        "catalog",
        "POST",
        "/products",
        422,
        Platform.admin_token,
        '{"name": "a\\udc00", "price_cents": 1, "currency": "EUR", "stock": 1}',
    ),
    Finding(
        "newline after a $-anchored pattern",
        "catalog",
        "POST",
        "/products",
        422,
        Platform.admin_token,
        '{"name": "a", "price_cents": 1, "currency": "EUR\\n", "stock": 1}',
    ),
    Finding(
        "newline after a $-anchored pattern",
        "catalog",
        "POST",
        "/reservations",
        422,
        Platform.service_token,
        '{"key": "k\\n", "items": [{"product_id": 1, "quantity": 1}]}',
    ),
    Finding("undeclared method with a form body", "users", "PUT", "/oauth/token", 405, form={"scope": "x"}),
    Finding("unknown query parameter", "catalog", "GET", "/products?limit=1&bogus=1", 422),
    Finding("unknown query parameter", "orders", "GET", "/orders?bogus=1", 422, Platform.customer_token),
    Finding("empty PATCH", "catalog", "PATCH", "/products/1", 422, Platform.admin_token, "{}"),
    Finding(
        "new password without the current one",
        "users",
        "PATCH",
        "/users/me",
        422,
        Platform.customer_token,
        '{"password": "a new password"}',
    ),
    Finding(
        "email outside the documented pattern",
        "users",
        "POST",
        "/users/register",
        422,
        body='{"email": "0@0.a", "password": "long enough", "name": "x"}',
    ),
]


def test_past_findings_stay_fixed(platform: Platform, case: Case) -> None:
    """What fuzzing found, sent as it was: each gets its problem document, none a 500."""
    tokens: dict[Callable[[Platform], str], str] = {}
    wrong = []
    for finding in FINDINGS:
        headers = {"Content-Type": "application/json"} if finding.body is not None else {}
        if finding.token is not None:
            token = tokens.setdefault(finding.token, finding.token(platform))
            headers["Authorization"] = f"Bearer {token}"
        response = requests.request(
            finding.method,
            getattr(platform, finding.service).url + finding.path,
            data=finding.body.encode() if finding.body is not None else finding.form,
            headers=headers,
            auth=finding.basic,
            timeout=10,
        )
        case.tried()
        if response.status_code != finding.status or response.headers["Content-Type"] != PROBLEM:
            wrong.append(
                f"{finding.what}: {finding.method} {finding.path} -> {response.status_code} {response.text}"
            )
    case.saw(f"{len(FINDINGS) - len(wrong)} of {len(FINDINGS)} answered with their problem document")
    assert not wrong, "\n".join(wrong)
