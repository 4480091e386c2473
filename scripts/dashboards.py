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

from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUTPUT = Path(__file__).resolve().parents[1] / "charts" / "flotilla" / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every selector of a service's metrics: the namespace and the job (the Microservice's name).
SERVICES = 'namespace=~"$namespace", job=~"$service"'
# Grafana's window for rate(): four scrape intervals at least, wider as the time range grows.
WINDOW = "$__rate_interval"
# Releases are rare: counted per hour (a rate per second would read 0.0003).
RELEASES_WINDOW = "1h"
TAG = "flotilla"
# The dashboards of the services' metrics share what their variables mean (a namespace, a
# Microservice): links between them keep the selection. The operator's dashboard selects the
# operator's own namespace and job, so links to and from it keep only the time range.
SERVICE_TAG, OPERATOR_TAG = "flotilla-services", "flotilla-operator"
# The runbooks of the alerts (charts/flotilla/rules/flotilla.rules.yaml: each rule's runbook_url).
RUNBOOKS = "https://github.com/flotilla-dev/flotilla/blob/main/docs/runbooks.md"
CIRCUIT_STATES = {0: ("closed", "green"), 1: ("half-open", "yellow"), 2: ("open", "red")}
OPERATOR_WIDE = " The operator serves every namespace: this panel follows neither variable."
# The operator's series of each Microservice, as Prometheus stores them: the operator's target
# has a namespace label, so the Microservice's arrives as exported_namespace; its name as name.
# Deduplicated per Microservice (two operators' leaders, or a fail-over's overlap, count once).
MICROSERVICE = 'exported_namespace=~"$namespace"'
PER_MICROSERVICE = "exported_namespace, name"
MICROSERVICE_WIDE = (
    " It follows the namespace variable only: every Microservice of those namespaces counts, "
    "scraped or not (the service variable lists only those with metrics)."
)


def runbook(alert: str) -> dashboard.DashboardLink:
    """A panel link to ``alert``'s runbook."""
    return dashboard.DashboardLink(f"Runbook: {alert}").url(f"{RUNBOOKS}#{alert.lower()}").target_blank(True)


def query(
    expr: str, legend: str = "", *, heatmap_format: bool = False, exemplars: bool = False
) -> prometheus.Dataquery:
    """One PromQL target; ``exemplars``: the traces its buckets carry, shown as points."""
    target = prometheus.Dataquery().expr(expr).legend_format(legend).exemplar(exemplars)
    return target.format(PromQueryFormat.HEATMAP) if heatmap_format else target


def series(
    title: str,
    unit: str,
    description: str,
    targets: Iterable[prometheus.Dataquery],
    width: int = 12,
    alerts: Iterable[str] = (),
) -> timeseries.Panel:
    """A time series panel, linked to the runbooks of the ``alerts`` it shows."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(width)
    )
    if alerts:
        panel = panel.links([runbook(alert) for alert in alerts])
    for target in targets:
        panel = panel.with_target(target)
    return panel


def variable(name: str, label: str, query_text: str, description: str) -> dashboard.QueryVariable:
    """A multi-value query variable with "All", listed again each time the dashboard loads."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(query_text)
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def link(title: str, tag: str, *, keep_variables: bool) -> dashboard.DashboardLink:
    """A drop-down of the dashboards tagged ``tag`` (Grafana leaves the current one out)."""
    return (
        dashboard.DashboardLink(title)
        .type(DashboardLinkType.DASHBOARDS)
        .tags([TAG, tag])
        .as_dropdown(True)
        .include_vars(keep_variables)
        .keep_time(True)
    )


def headed(
    board: dashboard.Dashboard,
    metric: str,
    *,
    namespaces: str,
    jobs: tuple[str, str],
    keep_variables: bool,
) -> dashboard.Dashboard:
    """A dashboard's head: data source, namespace and job variables listed from ``metric``.

    ``namespaces``: the first's description; ``jobs``: the second's label and description; the
    link to the services' dashboards keeps the variables or not.
    """
    return (
        board.refresh("30s")
        .time("now-1h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(variable("namespace", "Namespace", f"label_values({metric}, namespace)", namespaces))
        .with_variable(
            variable("service", jobs[0], f'label_values({metric}{{namespace=~"$namespace"}}, job)', jobs[1])
        )
        .link(link("Flotilla", SERVICE_TAG, keep_variables=keep_variables))
    )


def base(title: str, uid: str, metric: str, description: str) -> dashboard.Dashboard:
    """A dashboard of the services' metrics, its variables listed from ``metric``, linked to the others."""
    return headed(
        dashboard.Dashboard(title).uid(uid).description(description).tags([TAG, SERVICE_TAG]),
        metric,
        namespaces="The namespaces whose Microservices export these metrics.",
        jobs=(
            "Service",
            "The Microservices (the job of their ServiceMonitor's targets) in the selected namespaces.",
        ),
        keep_variables=True,
    ).link(link("Operator", OPERATOR_TAG, keep_variables=False))


def latency(
    quantile: str, by: str = "namespace, job", legend: str = "{{job}} ({{namespace}})"
) -> prometheus.Dataquery:
    """A latency quantile from the request histogram."""
    expr = (
        f"histogram_quantile({quantile}, sum by ({by}, le) "
        f"(rate(http_request_duration_seconds_bucket{{{SERVICES}}}[{WINDOW}])))"
    )
    return query(expr, f"p{quantile[2:]} {legend}", exemplars=True)


def error_ratio(by: str) -> str:
    """The share of requests answered with a 5xx, by ``by``."""
    errors = f'http_requests_total{{{SERVICES},status=~"5.."}}'
    return (
        f"sum by ({by}) (rate({errors}[{WINDOW}])) "
        f"/ sum by ({by}) (rate(http_requests_total{{{SERVICES}}}[{WINDOW}]))"
    )


def per_service(expr: str) -> prometheus.Dataquery:
    """A target whose series are one per service."""
    return query(expr, "{{job}} ({{namespace}})")


def overview() -> dashboard.Dashboard:
    """Platform overview: the services' traffic, errors, latency, pods; business; releases, operator."""
    return (
        base(
            "Flotilla / Platform overview",
            "flotilla-overview",
            "http_requests_total",
            "Every Flotilla service at a glance: traffic, errors, latency, business outcomes, and the "
            "releases and operator behind them.",
        )
        .with_panel(
            series(
                "Request rate",
                "reqps",
                "Requests each service answered per second (every route and status; probes included).",
                [per_service(f"sum by (namespace, job) (rate(http_requests_total{{{SERVICES}}}[{WINDOW}]))")],
            )
        )
        .with_panel(
            series(
                "Error ratio (5xx)",
                "percentunit",
                "The share of each service's requests answered with a 5xx. FlotillaHighErrorRatio fires "
                "above 5% for 10 minutes.",
                [per_service(error_ratio("namespace, job"))],
                alerts=["FlotillaHighErrorRatio"],
            )
        )
        .with_panel(
            series(
                "Latency p50 / p95 / p99",
                "s",
                "Request latency quantiles per service, from the kit's histogram. FlotillaHighLatencyP99 "
                "fires when p99 stays above 1s for 10 minutes.",
                [latency("0.50"), latency("0.95"), latency("0.99")],
                alerts=["FlotillaHighLatencyP99"],
            )
        )
        .with_panel(
            series(
                "In-flight requests",
                "short",
                "Requests being served right now, summed over each service's pods and workers: "
                "saturation shows here before latency.",
                [per_service(f"sum by (namespace, job) (http_requests_in_flight{{{SERVICES}}})")],
            )
        )
        .with_panel(business("Registrations by result", "flotilla_registrations_total", "result", "users"))
        .with_panel(business("Logins by result", "flotilla_logins_total", "result", "users"))
        .with_panel(business("Orders by outcome", "flotilla_orders_total", "outcome", "orders"))
        .with_panel(
            business("Stock reservations by result", "flotilla_stock_reservations_total", "result", "catalog")
        )
        .with_row(dashboard.Row("Pods, releases and the operator"))
        .with_panel(
            series(
                "Pods scraped and down",
                "short",
                "Each service's pods Prometheus scrapes (up), those it cannot reach (down), and those "
                "the operator says its ServiceMonitor should find (expected: its desired replicas). "
                "FlotillaServiceDown fires when one stays down for 2 minutes, or a Microservice expected "
                "to have pods has none.",
                [
                    query(f"sum by (namespace, job) (up{{{SERVICES}}})", "up {{job}} ({{namespace}})"),
                    query(
                        f"count by (namespace, job) (up{{{SERVICES}}} == 0)", "down {{job}} ({{namespace}})"
                    ),
                    query(
                        f"max by ({PER_MICROSERVICE}) (flotilla_operator_microservice_scrape_targets"
                        f'{{{MICROSERVICE}, name=~"$service"}})',
                        "expected {{name}} ({{exported_namespace}})",
                    ),
                ],
                6,
                alerts=["FlotillaServiceDown"],
            )
        )
        .with_panel(
            series(
                "Pods by revision",
                "short",
                "Each service's pods by the revision they run (the pod template's hash): two revisions "
                "side by side are a release in progress, the candidate beside the stable.",
                [
                    query(
                        f"count by (namespace, job, flotilla_dev_revision) (up{{{SERVICES}}})",
                        "{{job}} {{flotilla_dev_revision}}",
                    )
                ],
                6,
            )
        )
        .with_panel(
            series(
                "Releases per hour by result",
                "short",
                "Releases the operator started, promoted and rolled back over the last hour. "
                "FlotillaRolloutRolledBack fires on a rollback." + OPERATOR_WIDE,
                [
                    query(
                        "sum by (result) " + risen("flotilla_operator_rollouts_total", RELEASES_WINDOW),
                        "{{result}}",
                    )
                ],
                6,
                alerts=["FlotillaRolloutRolledBack"],
            )
        )
        .with_panel(
            series(
                "Operator: Microservices, leaders, reconcile errors",
                "short",
                "Microservices the operator manages, its replicas leading (1 when healthy) and its "
                "reconcile errors per second. FlotillaOperatorNoLeader fires when no replica leads for 2 "
                "minutes, FlotillaOperatorReconcileErrors on errors for 15." + OPERATOR_WIDE,
                [
                    query('max(flotilla_operator_managed_resources{kind="Microservice"})', "Microservices"),
                    query("sum(flotilla_operator_leader)", "leading replicas"),
                    query(f"sum(rate(flotilla_operator_reconcile_errors_total[{WINDOW}]))", "errors/s"),
                ],
                6,
                alerts=["FlotillaOperatorNoLeader", "FlotillaOperatorReconcileErrors"],
            )
        )
        .with_panel(
            series(
                "Microservices ready and not ready",
                "short",
                "Microservices whose Ready condition is True, and those whose is not (the operator's "
                "leader reports each one; `kubectl get ms -A` names them)." + MICROSERVICE_WIDE,
                [
                    query(
                        f"sum(max by ({PER_MICROSERVICE}) "
                        f"(flotilla_operator_microservice_ready{{{MICROSERVICE}}}))",
                        "ready",
                    ),
                    query(
                        f"sum(1 - max by ({PER_MICROSERVICE}) "
                        f"(flotilla_operator_microservice_ready{{{MICROSERVICE}}}))",
                        "not ready",
                    ),
                ],
                12,
            )
        )
        .with_panel(
            series(
                "Microservices by release phase",
                "short",
                "Microservices by the phase of their release: Stable, Progressing (a canary taking "
                "traffic in steps), Promoting, RolledBack (until the spec changes again)."
                + MICROSERVICE_WIDE,
                [
                    query(
                        f"count by (phase) (max by ({PER_MICROSERVICE}, phase) "
                        f"(flotilla_operator_microservice_rollout_phase{{{MICROSERVICE}}}))",
                        "{{phase}}",
                    )
                ],
                12,
            )
        )
    )


def business(title: str, counter: str, label: str, exporter: str) -> timeseries.Panel:
    """The rate of one business counter of the selected services, split by its result label."""
    return series(
        title,
        "ops",
        f"{title} per second, as {exporter} counts them (empty while {exporter} is not selected).",
        [
            query(
                f"sum by (namespace, job, {label}) (rate({counter}{{{SERVICES}}}[{WINDOW}]))",
                f"{{{{job}}}}: {{{{{label}}}}}",
            )
        ],
        6,
    )


def drill_down() -> dashboard.Dashboard:
    """One service: its routes, status codes, errors and latency by route, heatmap, pods."""
    return (
        base(
            "Flotilla / Service",
            "flotilla-service",
            "http_requests_total",
            "One service in detail: its routes, statuses, latency and pods.",
        )
        .with_panel(
            series(
                "Requests by route",
                "reqps",
                "Requests per second by method and route template (never the raw path).",
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
                "Responses per second by HTTP status code.",
                [query(f"sum by (status) (rate(http_requests_total{{{SERVICES}}}[{WINDOW}]))", "{{status}}")],
            )
        )
        .with_panel(
            series(
                "5xx ratio by route",
                "percentunit",
                "The share of each route's requests answered with a 5xx: which routes "
                "FlotillaHighErrorRatio is about.",
                [query(error_ratio("method, route"), "{{method}} {{route}}")],
                alerts=["FlotillaHighErrorRatio"],
            )
        )
        .with_panel(
            series(
                "p99 latency by route",
                "s",
                "The 99th percentile of each route's latency: one slow route is a query, all of them "
                "saturation. FlotillaHighLatencyP99 fires when the service's p99 stays above 1s.",
                [latency("0.99", "route", "{{route}}")],
                alerts=["FlotillaHighLatencyP99"],
            )
        )
        .with_panel(
            series(
                "Pods scraped, by revision",
                "short",
                "The pods Prometheus scrapes (up) and cannot reach (down), by the revision they run. "
                "FlotillaServiceDown fires when one stays down for 2 minutes.",
                [
                    query(
                        f"sum by (flotilla_dev_revision) (up{{{SERVICES}}})", "up {{flotilla_dev_revision}}"
                    ),
                    query(
                        f"count by (flotilla_dev_revision) (up{{{SERVICES}}} == 0)",
                        "down {{flotilla_dev_revision}}",
                    ),
                ],
                alerts=["FlotillaServiceDown"],
            )
        )
        .with_panel(
            heatmap.Panel()
            .title("Latency heatmap")
            .description(
                "How many requests fell in each latency bucket, over time: tails and bimodal latency."
            )
            .datasource(DATASOURCE)
            .height(8)
            .span(24)
            .with_target(
                query(
                    f"sum by (le) (rate(http_request_duration_seconds_bucket{{{SERVICES}}}[{WINDOW}]))",
                    "{{le}}",
                    heatmap_format=True,
                    exemplars=True,
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
            "http_client_requests_total",
            "Calls the selected services make to others through the kit's client: rate, failures, "
            "latency and circuit breakers.",
        )
        .with_panel(
            series(
                "Outbound calls by target",
                "reqps",
                "Calls per second from each selected service to each target service.",
                [
                    query(
                        f"sum by (namespace, job, target) (rate({outbound}[{WINDOW}]))",
                        "{{job}} -> {{target}} ({{namespace}})",
                    )
                ],
            )
        )
        .with_panel(
            series(
                "Failed outbound calls (5xx, errors, timeouts, open circuit)",
                "reqps",
                "Calls per second that failed, by outcome: a 5xx, a connection error, a timeout, or "
                "refused at once by an open circuit.",
                [
                    query(
                        "sum by (namespace, job, target, outcome) "
                        f'(rate(http_client_requests_total{{{SERVICES},outcome=~"5..|error|timeout|circuit_open"}}'
                        f"[{WINDOW}]))",
                        "{{job}} -> {{target}}: {{outcome}} ({{namespace}})",
                    )
                ],
            )
        )
        .with_panel(
            series(
                "Outbound p95 latency by target",
                "s",
                "The 95th percentile of call latency by target, retries included: a slow dependency "
                "shows here first.",
                [
                    query(
                        "histogram_quantile(0.95, sum by (namespace, job, target, le) "
                        f"(rate(http_client_request_duration_seconds_bucket{{{SERVICES}}}[{WINDOW}])))",
                        "{{job}} -> {{target}} ({{namespace}})",
                    )
                ],
            )
        )
        .with_panel(
            statetimeline.Panel()
            .title("Circuit state")
            .description(
                "Each caller's circuit breaker towards each target: closed (calls pass), half-open (one "
                "trial call) or open (calls fail fast with 503). FlotillaCircuitOpen fires when one stays "
                "open for a minute."
            )
            .datasource(DATASOURCE)
            .height(8)
            .span(12)
            .links([runbook("FlotillaCircuitOpen")])
            .mappings(
                [
                    ValueMap(
                        options={
                            str(value): ValueMappingResult(text=text, color=color, index=value)
                            for value, (text, color) in CIRCUIT_STATES.items()
                        }
                    )
                ]
            )
            .with_target(
                query(
                    f"max by (namespace, job, target) (http_client_circuit_state{{{SERVICES}}})",
                    "{{job}} -> {{target}} ({{namespace}})",
                )
            )
        )
    )


def risen(selector: str, window: str) -> str:
    """How much a counter rose over ``window``, a series that appeared within it counted whole.

    The first rollback of a reason makes its series: ``increase`` alone sees no rise in it.
    """
    return f"(({selector} unless {selector} offset {window}) or increase({selector}[{window}]))"


def operator_base() -> dashboard.Dashboard:
    """The operator's dashboard: its namespace and job as the variables, links to the services'."""
    return headed(
        dashboard.Dashboard("Flotilla / Operator")
        .uid("flotilla-operator")
        .description("The Flotilla operator: reconciles, errors, children, leadership, watches and releases.")
        .tags([TAG, OPERATOR_TAG]),
        "flotilla_operator_reconciles_total",
        namespaces="The namespaces where an operator runs.",
        jobs=(
            "Operator",
            "The operator's metrics job (its chart's ServiceMonitor's) in the selected namespaces.",
        ),
        keep_variables=False,
    )


def operator() -> dashboard.Dashboard:
    """The operator: reconciles, errors, durations, children, drift; leadership, watches; releases."""
    return (
        operator_base()
        .with_panel(
            series(
                "Reconciles by result",
                "ops",
                "Reconciliations of Microservices per second, successful or not.",
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
                "Failed reconciliations per second by error kind (api_403: RBAC or a full quota; "
                "api_422: an invalid child; resource_missing: a removed CRD). "
                "FlotillaOperatorReconcileErrors fires after 15 minutes of errors.",
                [
                    query(
                        "sum by (error) "
                        f"(rate(flotilla_operator_reconcile_errors_total{{{SERVICES}}}[{WINDOW}]))",
                        "{{error}}",
                    )
                ],
                alerts=["FlotillaOperatorReconcileErrors"],
            )
        )
        .with_panel(
            series(
                "Reconcile duration p50 / p99",
                "s",
                "How long one reconciliation takes, its API calls included.",
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
                "Microservices the operator manages and the children it made for them.",
                [query(f"sum by (kind) (flotilla_operator_managed_resources{{{SERVICES}}})", "{{kind}}")],
            )
        )
        .with_panel(
            series(
                "Drift corrections (children restored) by kind",
                "ops",
                "Children deleted or changed by hand that the operator restored, per second by kind.",
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
                "Microservices whose last reconcile failed, waiting for their next try.",
                [query(f"sum(flotilla_operator_reconcile_retries{{{SERVICES}}})", "waiting")],
            )
        )
        .with_panel(
            series(
                "Microservices by Ready and release phase, pods to scrape",
                "short",
                "The Microservices this operator's leader reports: Ready or not, by release phase, and "
                "the pods their ServiceMonitors should find (FlotillaServiceDown fires for a Microservice "
                "expected to have pods and with none). A standby reports none.",
                [
                    query(f"sum(flotilla_operator_microservice_ready{{{SERVICES}}})", "ready"),
                    query(f"sum(1 - flotilla_operator_microservice_ready{{{SERVICES}}})", "not ready"),
                    query(
                        f"sum by (phase) (flotilla_operator_microservice_rollout_phase{{{SERVICES}}})",
                        "{{phase}}",
                    ),
                    query(
                        f"sum(flotilla_operator_microservice_scrape_targets{{{SERVICES}}})", "pods to scrape"
                    ),
                ],
                alerts=["FlotillaServiceDown"],
            )
        )
        .with_panel(
            series(
                "API requests by verb and resource (not the watches)",
                "reqps",
                "Requests per second the operator's client sends to the API server (kopf's watches are "
                "not counted).",
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
                "Replicas holding the Lease (one when healthy) and standing by. FlotillaOperatorNoLeader "
                "fires when none leads for 2 minutes.",
                [
                    query(f"sum(flotilla_operator_leader{{{SERVICES}}})", "leading"),
                    query(f"sum(1 - flotilla_operator_leader{{{SERVICES}}})", "standing by"),
                ],
                8,
                alerts=["FlotillaOperatorNoLeader"],
            )
        )
        .with_panel(
            series(
                "Lease acquisitions per hour (fail-overs and hand-overs)",
                "short",
                "Times a replica took the Lease over the last hour: more than one is a fail-over.",
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
                "Watch streams found silent while they owed an event, and the relaunches that restarted "
                "every watch, over the last hour.",
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
                "Releases started, promoted and rolled back over the last hour.",
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
                "Releases rolled back over the last hour, by reason (ErrorRatio, Latency, CheckFailed, "
                "CrashLoop, ProgressDeadlineExceeded, Aborted). FlotillaRolloutRolledBack fires on each.",
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
                alerts=["FlotillaRolloutRolledBack"],
            )
        )
        .with_panel(
            series(
                "Time to rollback p50 / p99 (over an hour)",
                "s",
                "How long rolled-back releases ran, from their start to the traffic back on the stable.",
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
