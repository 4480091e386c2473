"""kopf wiring: every reaction ends in ``Reconciler.request`` for the Microservice concerned.

Only kopf's event handlers are used: a Microservice is reconciled when its event shows it asks
for something new, and a failed reconcile waits in ``RETRIES``. kopf's changing handlers
(on.create/on.update/on.resume) patched two annotations onto every Microservice and deep-copied
every event's body to diff it.
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
from urllib3.exceptions import HTTPError as TransportError

from flotilla_operator import GROUP, KIND, MANAGED_BY, PLURAL, VERSION
from flotilla_operator.apirequests import count_requests
from flotilla_operator.crd import CRD_NAME, apply_crd
from flotilla_operator.diffbase import NoDiffBase
from flotilla_operator.echoes import Echoes
from flotilla_operator.kitversions import KitVersions
from flotilla_operator.kube import CHILD_KINDS, OPTIONAL_KINDS, WATCHED_KINDS, Kube
from flotilla_operator.latest import Latest
from flotilla_operator.leadership import Election
from flotilla_operator.malloc import trim
from flotilla_operator.metrics import (
    DRIFT_CORRECTIONS,
    MICROSERVICES,
    RECONCILE_ERRORS,
    RECONCILES_WAITING,
    WATCH_STALLS,
)
from flotilla_operator.prometheus import Prometheus, PrometheusUnavailable
from flotilla_operator.reconcile import Reconciler, owner_of, slim
from flotilla_operator.release import COMMAND_ANNOTATION
from flotilla_operator.render import ConfigMissing, RenderContext
from flotilla_operator.retries import Retries, backoff
from flotilla_operator.rollout import TICK_SECONDS
from flotilla_operator.settings import OperatorSettings
from flotilla_operator.status import is_ready
from flotilla_operator.watchhealth import BacklogExecutor, WatchHealth

log = logging.getLogger("flotilla.operator")
SETTINGS = OperatorSettings.load()
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
EXECUTOR = BacklogExecutor(SETTINGS.workers)  # kopf's threads for the sync handlers below
# Set when the operator stops: ends the resync and releases threads, and is kopf's stop flag
# (kopf waits for that flag in a thread of asyncio's executor, which must end for kopf to exit).
STOP = threading.Event()
# Retries of kopf's own API requests: about a minute in all (an API server restart), never
# more than 5 s apart, so that the operator resumes within seconds of the server answering.
API_RETRY_BACKOFFS = (0.5, 1, 1, 2, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5)
UNREACHABLE_RETRY_SECONDS = 2
CONFIG_RETRY_SECONDS = 5


class _State:
    reconciler: Reconciler | None = None
    election: Election | None = None
    ready: dict[tuple[str, str], bool] = {}
    # What each Microservice asked for when it was last reconciled from its own event.
    asked: dict[tuple[str, str], tuple[str, int, str | None]] = {}


WATCHES = WatchHealth([KIND, *WATCHED_KINDS], SETTINGS.watch_grace_seconds, busy=lambda: EXECUTOR.queued > 0)
for _kind in WATCHES.kinds:
    WATCH_STALLS.labels(_kind)  # at 0 from the start: a first stall is a rise
ECHOES = Echoes()
RETRIES = Retries()
KIT_VERSIONS = KitVersions()
LATEST = Latest()  # each Microservice's newest version, and its body from the watch
RECONCILES_WAITING.set_function(lambda: len(RETRIES))


def _wrote(kind: str, body: dict[str, Any]) -> None:
    """Every object written: its watch owes its version, and that version's event is an echo."""
    WATCHES.owe(kind, body)
    if kind == KIND:
        LATEST.seen(body)
    if kind in WATCHED_KINDS:  # no other kind's events are looked at for echoes
        ECHOES.wrote(kind, body)


def lead_with(election: Election | None) -> None:
    """Every write from now on first checks that ``election`` still holds the Lease."""
    _State.election = election


def _fence() -> None:
    if _State.election is not None:
        _State.election.check()


def api_client() -> client.ApiClient:
    """In-cluster credentials, else the current KUBECONFIG."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return count_requests(client.ApiClient())


def _post(ms: dict[str, Any], kind: str, reason: str, message: str) -> None:
    """Post an Event; a failure to post is logged, never a failed reconcile."""
    try:
        _reconciler().kube.post_event(ms, kind, reason, message)
    except (ApiException, TransportError, ConnectionError) as exc:
        log.warning("posting an event failed", extra={"reason": reason, "error": str(exc)})


def _reconciler() -> Reconciler:
    if _State.reconciler is None:
        _State.reconciler = Reconciler(
            Kube(api_client(), SETTINGS.crd_cache_seconds, fence=_fence, wrote=_wrote),
            _post,
            prometheus=Prometheus(SETTINGS.prometheus_url) if SETTINGS.prometheus_url else None,
            kit_versions=KIT_VERSIONS,
            base=RenderContext(
                ingress_namespace=SETTINGS.ingress_namespace,
                prometheus_namespace=SETTINGS.prometheus_namespace,
            ),
        )
    return _State.reconciler


def _seed_dependents(reconciler: Reconciler) -> None:
    """Learn every ``dependsOn`` before the first reconcile, so no NetworkPolicy misses a caller."""
    mark = reconciler.dependents.mark()
    reconciler.dependents.rebuild(reconciler.kube.all_microservices(SETTINGS.namespace), mark)


def _failure(error: Exception, failures: int) -> tuple[str, float]:
    """A failed reconcile's error label and the pause before its next try."""
    if isinstance(error, ConfigMissing):
        return "config_missing", CONFIG_RETRY_SECONDS  # the status says what is missing
    if isinstance(error, (ResourceNotFoundError, NotFoundError)):
        return "resource_missing", 2
    if isinstance(error, ApiException):
        status = error.status or 0
        if status == 409:
            return "api_409", 2  # a conflict: read again and apply
        # The server is busy or restarting; a request it refused will be refused again for a while.
        pause = 5.0 if status >= 500 or status == 429 else backoff(5, failures)
        return f"api_{status}", pause
    if isinstance(error, (TransportError, ConnectionError)):
        # The API server is restarting or the network blinked: resume within seconds of its return.
        return "unreachable", UNREACHABLE_RETRY_SECONDS
    return type(error).__name__, backoff(5, failures)


def _reconcile(namespace: str, name: str, ms: dict[str, Any] | None = None) -> None:
    """Reconcile ``namespace/name`` now; when that fails, it is counted and tried again later."""
    key = (namespace, name)
    try:
        # The Microservice as delivered, when that is its newest version: saves reading it.
        _reconciler().request(namespace, name, ms if ms is not None else LATEST.body(key))
    except Exception as error:
        reason, pause = _failure(error, RETRIES.failures(key) + 1)
        RECONCILE_ERRORS.labels(reason).inc()
        RETRIES.failed(key, pause)
        where = {"microservice": f"{namespace}/{name}", "error": reason, "retry_in": pause}
        if reason == "config_missing":
            log.info("waiting for configuration: %s", error, extra=where)
        elif reason == type(error).__name__:
            log.exception("reconcile failed", extra=where)
        else:
            log.warning("reconcile failed: %s", error, extra=where)
        return
    RETRIES.succeeded(key)


def _retry_forever(stop: threading.Event) -> None:
    """Hand each failed reconcile, when due, to the handler threads (it reads its Microservice)."""
    while not stop.is_set():
        for namespace, name in RETRIES.take_due(wait=1.0):
            try:
                EXECUTOR.submit(_reconcile, namespace, name)
            except RuntimeError:  # the executor shut down: the operator is stopping
                return


def tune(settings: kopf.OperatorSettings) -> None:
    """Set kopf's settings: watch timeouts against silent stalls, short retries, bounded workers."""
    settings.watching.server_timeout = SETTINGS.watch_timeout_seconds
    settings.watching.client_timeout = SETTINGS.watch_timeout_seconds + 30
    settings.watching.connect_timeout = 10
    settings.watching.inactivity_timeout = SETTINGS.watch_timeout_seconds * 2
    # Every API request of kopf, the watch streams' included, retries through these pauses; its
    # default pauses grow to 21 s, so a watch could wait that long after the API server is back.
    settings.networking.error_backoffs = API_RETRY_BACKOFFS
    settings.networking.connect_timeout = 10
    # No cap on kopf's per-resource tasks: a capped task idles for batching.idle_timeout before
    # it frees its slot, which made 200 new Microservices queue for minutes. The threads that
    # run handlers stay bounded.
    settings.execution.executor = EXECUTOR
    settings.execution.max_workers = SETTINGS.workers
    # kopf's own Events at WARNING and above (a handler failing): at INFO it posted two per
    # Microservice for every creation, update and resume ("Handler ... succeeded", "... is
    # processed"), 4,000 requests after a fail-over at 2,000. The operator posts its own Events.
    settings.posting.level = logging.WARNING
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # No changing handler reads a diff (see ``diffbase``): kopf built one, three deep copies of
    # the body, for every event of every kind watched.
    settings.persistence.diffbase_storage = NoDiffBase()


@kopf.on.startup(errors=kopf.ErrorsMode.PERMANENT)
def apply_own_crd(**_: Any) -> None:
    """Apply the Microservice CRD of this version before any handler needs it."""
    ensure_crd()


def ensure_crd() -> None:
    """Apply the CRD (unless switched off), so an operator upgrade upgrades the CRD."""
    if not SETTINGS.apply_crd:
        log.info("not applying the CRD (FLOTILLA_OPERATOR_APPLY_CRD=false)")
        return
    try:
        apply_crd(api_client())
    except (TransportError, ConnectionError, TimeoutError) as exc:
        raise kopf.TemporaryError(f"applying the CRD: {exc}", delay=UNREACHABLE_RETRY_SECONDS) from exc
    except ApiException as exc:
        if exc.status is None or exc.status >= 500 or exc.status == 409:
            raise kopf.TemporaryError(f"applying the CRD: {exc.status} {exc.reason}", delay=2) from exc
        raise kopf.PermanentError(
            f"applying the CRD {CRD_NAME} failed ({exc.status} {exc.reason}); grant the operator "
            "patch on it, or set FLOTILLA_OPERATOR_APPLY_CRD=false and upgrade the CRD yourself"
        ) from exc
    log.info("CRD applied", extra={"crd": CRD_NAME})


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Tune kopf, learn the dependencies, start the resync thread."""
    tune(settings)
    try:
        _seed_dependents(_reconciler())
    except Exception:  # the events fill the map in as well; a caller may be late, not lost
        log.exception("listing the Microservices at start-up failed")
    threading.Thread(target=_resync_forever, args=(STOP,), name="resync", daemon=True).start()
    threading.Thread(target=_tick_forever, args=(STOP,), name="releases", daemon=True).start()
    threading.Thread(target=_retry_forever, args=(STOP,), name="retries", daemon=True).start()
    log.info("operator started", extra={"workers": SETTINGS.workers, "resync": SETTINGS.resync_seconds})


def _resync_forever(stop: threading.Event) -> None:
    """Reconcile every Microservice periodically (drift without events, changed config).

    A kopf timer would add a finalizer to every Microservice, and a finalizer can outlive an
    uninstalled operator, leaving the resource stuck in deletion.
    """
    while not stop.wait(SETTINGS.resync_seconds):
        _resync_once(_reconciler())
        trim()  # what the burst of bodies freed goes back to the system


def _tick_forever(stop: threading.Event) -> None:
    """Look at every release in progress every ``TICK_SECONDS``: its steps run on a clock."""
    while not stop.wait(TICK_SECONDS):
        _reconciler().tick()


def _resync_once(reconciler: Reconciler) -> None:
    """Rebuild the callers index from one listing, then reconcile: callees whose callers changed first."""
    mark, series_mark = reconciler.dependents.mark(), MICROSERVICES.mark()
    try:
        items = reconciler.kube.all_microservices(SETTINGS.namespace)
    except Exception:
        log.exception("listing Microservices for the resync failed")
        return
    WATCHES.owe_all(KIND, items)  # a change listed here must come through the watch as well
    for kind in OPTIONAL_KINDS:  # not watched: a child of these kinds changed or gone shows here
        try:
            children = reconciler.kube.managed(kind, SETTINGS.namespace)
        except Exception:
            log.exception("listing children for the resync failed", extra={"kind": kind})
            continue
        reconciler.audit(kind, children or [])
    if reconciler.prometheus is not None:
        try:  # the kit each service's pods report, written to status by the reconciles below
            KIT_VERSIONS.refresh(reconciler.prometheus)
        except PrometheusUnavailable as exc:
            log.warning("reading the services' kit versions failed", extra={"error": str(exc)})
    # A DELETED missed in a watch gap would otherwise leave its caller admitted for good.
    changed = reconciler.dependents.rebuild(items, mark)
    listed = {(ms["metadata"]["namespace"], ms["metadata"]["name"]): ms for ms in items}
    MICROSERVICES.prune(listed, series_mark)  # likewise: no series of a Microservice gone meanwhile
    for namespace, name in [*sorted(changed), *(key for key in listed if key not in changed)]:
        # As listed when that is the newest version seen (else read again): a read of each cost
        # 2,000 requests a minute at 2,000 Microservices.
        _reconcile(namespace, name, LATEST.if_newest(listed.get((namespace, name))))


def _recorder(kind: str) -> Any:
    """An async handler noting what the watch of ``kind`` delivered, as it arrives."""

    async def record(body: kopf.Body, type: str | None, **_: Any) -> None:
        WATCHES.delivered(kind, dict(body), streamed=type is not None)  # type None: kopf's listing

    return record


# Registered first: kopf calls an object's event handlers in this order.
kopf.on.event(GROUP, VERSION, PLURAL, id=f"delivered-{KIND}")(_recorder(KIND))
for _kind in WATCHED_KINDS:
    _group, _, _version = CHILD_KINDS[_kind].rpartition("/")
    kopf.on.event(_group, _version, _kind, labels=MANAGED, id=f"delivered-{_kind}")(_recorder(_kind))


def asked_of(ms: dict[str, Any]) -> tuple[str, int, str | None]:
    """What a Microservice asks of the operator: its spec (by generation) and a rollout command.

    The uid tells a Microservice made again under the same name (its DELETED may have been
    missed in a watch gap) from the one before it. Status writes change none of this.
    """
    metadata = ms.get("metadata") or {}
    command = (metadata.get("annotations") or {}).get(COMMAND_ANNOTATION)
    return str(metadata.get("uid")), int(metadata.get("generation") or 0), command


@kopf.on.event(GROUP, VERSION, PLURAL)
def microservice_event(body: kopf.Body, namespace: str | None, name: str, type: str | None, **_: Any) -> None:
    """Reconcile a Microservice that asks for something new (at start: every one).

    Also follows ``dependsOn`` (the NetworkPolicies of the services named) and readiness (its
    dependents').
    """
    namespace, ms = str(namespace), dict(body)
    key = (namespace, name)
    if type == "DELETED":
        LATEST.forget(key)
        _State.asked.pop(key, None)
        RETRIES.succeeded(key)
    else:
        LATEST.delivered(ms)
    gone = type == "DELETED" or bool(ms.get("metadata", {}).get("deletionTimestamp"))
    if gone:  # its series go now; a reconcile still running on it sets them no more
        uid = ms.get("metadata", {}).get("uid")
        MICROSERVICES.remove(namespace, name, str(uid) if uid else None)
    depends_on = None if gone else list((ms.get("spec") or {}).get("dependsOn") or [])
    for dependency in sorted(_reconciler().dependents.update(namespace, name, depends_on)):
        _reconcile(namespace, dependency)  # its policy gains or loses this caller
    if not gone and _State.asked.get(key) != (asked := asked_of(ms)):
        _State.asked[key] = asked  # a failure is retried from the queue, not from the next event
        # As delivered only while no newer version exists: a watch running behind the operator's
        # own writes delivers a status it has already replaced (a release decided twice).
        delivered = LATEST.if_newest(ms)
        _reconcile(namespace, name, copy.deepcopy(delivered) if delivered is not None else None)
    ready = not gone and is_ready(ms)
    if _State.ready.get(key) == ready:
        return
    _State.ready[key] = ready
    if type == "DELETED":
        _State.ready.pop(key, None)
    for dependent in _reconciler().dependents.callers(namespace, name):
        _reconcile(namespace, dependent)


def _child_changed(body: kopf.Body, namespace: str | None, type: str | None, **_: Any) -> None:
    owner = owner_of(dict(body))
    if owner is None:
        return
    kind = str(body.get("kind", "unknown"))
    if type == "DELETED":
        ECHOES.forget(kind, dict(body))
    elif type is not None and ECHOES.is_echo(kind, dict(body)):
        return  # the version this operator just wrote, coming back: nothing new
    child = copy.deepcopy(slim(dict(body)))  # a copy of the little that is kept, not of the body
    if type == "DELETED":
        DRIFT_CORRECTIONS.labels(kind).inc()
    _reconciler().observe_child(str(namespace), owner, kind, child, deleted=type == "DELETED")
    if type is None:
        return  # kopf's listing (at start, after a watch gap): the owner's resume or resync runs it
    _reconcile(str(namespace), owner)


for _kind in WATCHED_KINDS:
    _group, _, _version = CHILD_KINDS[_kind].rpartition("/")
    kopf.on.event(_group, _version, _kind, labels=MANAGED)(_child_changed)


@kopf.on.cleanup()
def stop_resync(**_: Any) -> None:
    """Stop the resync thread with the operator."""
    STOP.set()
