"""Flotilla's Grafana dashboards as code (grafana-foundation-sdk).

``python scripts/dashboards.py`` writes charts/flotilla/dashboards/*.json; a test fails when the
checked-in files differ from what this produces. Every query uses only metrics the kit and the
operator export; the data source is a dashboard variable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUTPUT = Path(__file__).resolve().parents[1] / "charts" / "flotilla" / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SERVICES = 'job=~"$service"'
WINDOW = "5m"
# Releases are rare: counted per hour (a rate per second would read 0.0003).
RELEASES_WINDOW = "1h"


def query(expr: str, legend: str = "", *, heatmap_format: bool = False) -> prometheus.Dataquery:
    """One PromQL target."""
    target = prometheus.Dataquery().expr(expr).legend_format(legend)
    return target.format(PromQueryFormat.HEATMAP) if heatmap_format else target


def series(
    title: str, unit: str, targets: Iterable[prometheus.Dataquery], width: int = 12
) -> timeseries.Panel:
    """A time series panel."""
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(width)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def base(title: str, uid: str, service_query: str) -> dashboard.Dashboard:
    """A dashboard with the data source and service variables."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["flotilla"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("service")
            .label("Service")
            .datasource(DATASOURCE)
            .query(service_query)
            .multi(True)
            .include_all(True)
        )
    )


def latency(quantile: str, by: str = "job") -> prometheus.Dataquery:
    """A latency quantile from the request histogram."""
    expr = (
        f"histogram_quantile({quantile}, sum by ({by}, le) "
        f"(rate(http_request_duration_seconds_bucket{{{SERVICES}}}[{WINDOW}])))"
    )
    return query(expr, f"p{quantile[2:]} {{{{{by}}}}}")


def overview() -> dashboard.Dashboard:
    """Platform overview: rate, error ratio, latency and in-flight requests per service; business."""
    return (
        base("Flotilla / Platform overview", "flotilla-overview", "label_values(http_requests_total, job)")
        .with_panel(
            series(
                "Request rate",
                "reqps",
                [query(f"sum by (job) (rate(http_requests_total{{{SERVICES}}}[{WINDOW}]))", "{{job}}")],
            )
        )
        .with_panel(
            series(
                "Error ratio (5xx)",
                "percentunit",
                [
                    query(
                        f'sum by (job) (rate(http_requests_total{{{SERVICES},status=~"5.."}}[{WINDOW}]))'
                        f" / sum by (job) (rate(http_requests_total{{{SERVICES}}}[{WINDOW}]))",
                        "{{job}}",
                    )
                ],
            )
        )
        .with_panel(
            series("Latency p50 / p95 / p99", "s", [latency("0.50"), latency("0.95"), latency("0.99")])
        )
        .with_panel(
            series(
                "In-flight requests",
                "short",
                [query(f"sum by (job) (http_requests_in_flight{{{SERVICES}}})", "{{job}}")],
            )
        )
        .with_panel(business("Registrations by result", "flotilla_registrations_total", "result"))
        .with_panel(business("Logins by result", "flotilla_logins_total", "result"))
        .with_panel(business("Orders by outcome", "flotilla_orders_total", "outcome"))
        .with_panel(business("Stock reservations by result", "flotilla_stock_reservations_total", "result"))
    )


def business(title: str, counter: str, label: str) -> timeseries.Panel:
    """The rate of one business counter, split by its result label."""
    return series(
        title, "ops", [query(f"sum by ({label}) (rate({counter}[{WINDOW}]))", f"{{{{{label}}}}}")], 6
    )


def drill_down() -> dashboard.Dashboard:
    """One service: its routes, status codes and latency heatmap."""
    return (
        base("Flotilla / Service", "flotilla-service", "label_values(http_requests_total, job)")
        .with_panel(
            series(
                "Requests by route",
                "reqps",
                [
                    query(
                        f"sum by (method, route) (rate(http_requests_total{{{SERVICES}}}[{WINDOW}]))",
                        "{{method}} {{route}}",
                    )
                ],
                24,
            )
        )
        .with_panel(
            series(
                "Responses by status",
                "reqps",
                [query(f"sum by (status) (rate(http_requests_total{{{SERVICES}}}[{WINDOW}]))", "{{status}}")],
            )
        )
        .with_panel(series("p99 latency by route", "s", [latency("0.99", "route")]))
        .with_panel(
            heatmap.Panel()
            .title("Latency heatmap")
            .datasource(DATASOURCE)
            .height(8)
            .span(24)
            .with_target(
                query(
                    f"sum by (le) (rate(http_request_duration_seconds_bucket{{{SERVICES}}}[{WINDOW}]))",
                    "{{le}}",
                    heatmap_format=True,
                )
            )
        )
    )


def calls() -> dashboard.Dashboard:
    """Service-to-service calls: rate, errors and latency by target, circuit state."""
    outbound = f"http_client_requests_total{{{SERVICES}}}"
    return (
        base(
            "Flotilla / Service-to-service calls",
            "flotilla-calls",
            "label_values(http_client_requests_total, job)",
        )
        .with_panel(
            series(
                "Outbound calls by target",
                "reqps",
                [query(f"sum by (job, target) (rate({outbound}[{WINDOW}]))", "{{job}} -> {{target}}")],
            )
        )
        .with_panel(
            series(
                "Failed outbound calls (5xx, errors, timeouts, open circuit)",
                "reqps",
                [
                    query(
                        f"sum by (job, target, outcome) (rate(http_client_requests_total{{{SERVICES},"
                        f'outcome=~"5..|error|timeout|circuit_open"}}[{WINDOW}]))',
                        "{{job}} -> {{target}}: {{outcome}}",
                    )
                ],
            )
        )
        .with_panel(
            series(
                "Outbound p95 latency by target",
                "s",
                [
                    query(
                        "histogram_quantile(0.95, sum by (job, target, le) "
                        f"(rate(http_client_request_duration_seconds_bucket{{{SERVICES}}}[{WINDOW}])))",
                        "{{job}} -> {{target}}",
                    )
                ],
            )
        )
        .with_panel(
            stat.Panel()
            .title("Circuit state (0 closed, 1 half-open, 2 open)")
            .datasource(DATASOURCE)
            .height(8)
            .span(12)
            .with_target(
                query(
                    f"max by (job, target) (http_client_circuit_state{{{SERVICES}}})", "{{job}} -> {{target}}"
                )
            )
        )
    )


def risen(selector: str, window: str) -> str:
    """How much a counter rose over ``window``, a series that appeared within it counted whole.

    The first rollback of a reason makes its series: ``increase`` alone sees no rise in it.
    """
    return f"(({selector} unless {selector} offset {window}) or increase({selector}[{window}]))"


def operator() -> dashboard.Dashboard:
    """The operator: reconciles, errors, durations, children, drift; leadership, watches; releases."""
    return (
        base(
            "Flotilla / Operator",
            "flotilla-operator",
            "label_values(flotilla_operator_reconciles_total, job)",
        )
        .with_panel(
            series(
                "Reconciles by result",
                "ops",
                [
                    query(
                        f"sum by (result) (rate(flotilla_operator_reconciles_total{{{SERVICES}}}[{WINDOW}]))",
                        "{{result}}",
                    )
                ],
            )
        )
        .with_panel(
            series(
                "Reconcile errors by kind",
                "ops",
                [
                    query(
                        "sum by (error) "
                        f"(rate(flotilla_operator_reconcile_errors_total{{{SERVICES}}}[{WINDOW}]))",
                        "{{error}}",
                    )
                ],
            )
        )
        .with_panel(
            series(
                "Reconcile duration p50 / p99",
                "s",
                [
                    query(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(flotilla_operator_reconcile_duration_seconds_bucket{{{SERVICES}}}[{WINDOW}])))",
                        f"p{q[2:]}",
                    )
                    for q in ("0.50", "0.99")
                ],
            )
        )
        .with_panel(
            series(
                "Managed resources",
                "short",
                [query(f"sum by (kind) (flotilla_operator_managed_resources{{{SERVICES}}})", "{{kind}}")],
            )
        )
        .with_panel(
            series(
                "Drift corrections (children restored) by kind",
                "ops",
                [
                    query(
                        "sum by (kind) "
                        f"(rate(flotilla_operator_drift_corrections_total{{{SERVICES}}}[{WINDOW}]))",
                        "{{kind}}",
                    )
                ],
            )
        )
        .with_panel(
            series(
                "Reconciles waiting for a retry",
                "short",
                [query(f"sum(flotilla_operator_reconcile_retries{{{SERVICES}}})", "waiting")],
            )
        )
        .with_panel(
            series(
                "API requests by verb and resource (not the watches)",
                "reqps",
                [
                    query(
                        "sum by (verb, resource) "
                        f"(rate(flotilla_operator_api_requests_total{{{SERVICES}}}[{WINDOW}]))",
                        "{{verb}} {{resource}}",
                    )
                ],
                24,
            )
        )
        .with_row(dashboard.Row("Leadership and watches"))
        .with_panel(
            series(
                "Replicas leading and standing by",
                "short",
                [
                    query(f"sum(flotilla_operator_leader{{{SERVICES}}})", "leading"),
                    query(f"sum(1 - flotilla_operator_leader{{{SERVICES}}})", "standing by"),
                ],
                8,
            )
        )
        .with_panel(
            series(
                "Lease acquisitions per hour (fail-overs and hand-overs)",
                "short",
                [
                    query(
                        "sum by (job) "
                        + risen(
                            f"flotilla_operator_leader_acquisitions_total{{{SERVICES}}}", RELEASES_WINDOW
                        ),
                        "{{job}}",
                    )
                ],
                8,
            )
        )
        .with_panel(
            series(
                "Watch stalls by kind, and watch restarts, per hour",
                "short",
                [
                    query(
                        "sum by (kind) "
                        + risen(f"flotilla_operator_watch_stalls_total{{{SERVICES}}}", RELEASES_WINDOW),
                        "stalled: {{kind}}",
                    ),
                    query(
                        "sum "
                        + risen(f"flotilla_operator_watch_restarts_total{{{SERVICES}}}", RELEASES_WINDOW),
                        "restarts",
                    ),
                ],
                8,
            )
        )
        .with_row(dashboard.Row("Releases"))
        .with_panel(
            series(
                "Releases per hour by result",
                "short",
                [
                    query(
                        "sum by (result) "
                        + risen(f"flotilla_operator_rollouts_total{{{SERVICES}}}", RELEASES_WINDOW),
                        "{{result}}",
                    )
                ],
                8,
            )
        )
        .with_panel(
            series(
                "Rollbacks per hour by reason",
                "short",
                [
                    query(
                        "sum by (reason) "
                        + risen(
                            f'flotilla_operator_rollouts_total{{{SERVICES},result="rolled_back"}}',
                            RELEASES_WINDOW,
                        ),
                        "{{reason}}",
                    )
                ],
                8,
            )
        )
        .with_panel(
            series(
                "Time to rollback p50 / p99 (over an hour)",
                "s",
                [
                    query(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(flotilla_operator_rollback_seconds_bucket{{{SERVICES}}}[{RELEASES_WINDOW}])))",
                        f"p{q[2:]}",
                    )
                    for q in ("0.50", "0.99")
                ],
                8,
            )
        )
    )


DASHBOARDS = {"overview": overview, "service": drill_down, "calls": calls, "operator": operator}


def render() -> dict[str, str]:
    """Each dashboard's file name and JSON text."""
    return {
        f"{name}.json": json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> None:
    """Write the dashboards (or, with --check, exit 1 when the files are stale)."""
    check = "--check" in sys.argv[1:]
    stale = []
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        path = OUTPUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale dashboards: {', '.join(stale)}; run: python scripts/dashboards.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
