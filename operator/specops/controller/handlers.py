"""kopf registrations: thin, every one delegates to :class:`Reconciler`.

Triggers, all running the same cycle:

- an event on a SpeculativeDeployment whose generation this process has not
  cycled yet: a creation, a spec change, or every resource once when the
  operator starts (level-triggered: the generation in hand is compared with
  the one last reconciled, so the echo of our own status write is ignored).
  kopf's change handlers are deliberately not used: they keep their state in
  annotations, an extra write per change on the user's object. A temporary
  failure (Hub down, API 5xx/409) schedules its own retry with a doubling
  delay (:meth:`Reconciler.reconcile`); a permanent one (model missing,
  incompatible) is recorded in status and not retried: only a spec change
  (or the resync) tries again.
- an event on an owned Deployment (watched server-side filtered by the
  ``managed-by`` label): deletion or a hand edit of its spec triggers a
  reconcile that restores it; a status change updates ``Ready`` on the owner.
- a full resync every ``resync_seconds`` (:func:`resync_forever`, run next
  to kopf by the runner): the safety net for anything missed.
- the closed loop every ``evaluation_seconds`` (:func:`evaluate_forever`, run
  next to kopf by the runner, trigger ``evaluate``): observe Prometheus and
  let the policy decide speculation and replicas (:mod:`.loop`), for the
  resources where it has something to decide.

No ``on.delete`` handler and no kopf timer or daemon, therefore no finalizer
(kopf puts one on every object that has a timer): owner references let the
garbage collector delete the children, nothing else needs cleanup, so
deleting a resource is never blocked by the operator being down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from specops.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from specops.controller.reconcile import Reconciler
from specops.render.meta import MANAGED_BY_LABEL
from specops.settings import OperatorSettings

log = logging.getLogger(__name__)

PREFIX = "specops.dev"


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf tuned for this operator: our own Events only, our own annotation prefix."""
    ks = kopf.OperatorSettings()
    ks.posting.enabled = False  # Events come from specops.kube.events, deduplicated
    # No runtime scanning of namespaces/CRDs: the CRD is installed before the operator
    # and namespaces are exact names, so RBAC needs no cluster-wide list/watch on them.
    ks.scanning.disabled = True
    # Only event handlers are registered, so kopf stores nothing on the objects;
    # these keys just keep any future change handler off kopf's defaults.
    ks.persistence.finalizer = f"{PREFIX}/finalizer"
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    ks.watching.label_selectors["apps", "deployments"] = f"{MANAGED_BY_LABEL}=specops"
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    ks.execution.max_workers = 8
    ks.networking.request_timeout = 60
    return ks


def plain(body: Any) -> dict[str, Any]:
    """A kopf Body as a plain dict (the reconcile is independent of kopf types)."""
    return {key: body[key] for key in body}


def owner_of(body: Any) -> tuple[str, str] | None:
    """(name, uid) of the controlling SpeculativeDeployment of a child, if any."""
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(GROUP + "/"):
            return str(ref.get("name")), str(ref.get("uid", ""))
    return None


async def resync_forever(
    reconciler: Reconciler, settings: OperatorSettings, stop: asyncio.Event
) -> None:
    """Reconcile every resource every ``resync_seconds``, a few at a time."""
    limit = asyncio.Semaphore(4)

    async def one(body: dict[str, Any]) -> None:
        async with limit:
            await reconciler.reconcile(body, trigger="resync")

    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.resync_seconds)
        if stop.is_set():
            return
        try:
            scope: list[str | None] = list(settings.namespaces) or [None]
            bodies = await reconciler.list_resources(scope)
            await asyncio.gather(*(one(b) for b in bodies))
        except Exception:  # the loop must outlive one bad round; the next one retries
            log.exception("resync round failed")


def wants_policy_body(body: dict[str, Any]) -> bool:
    """Whether the closed loop has anything to decide for this resource.

    Auto speculation with a speculator, or an autoscaling range without a
    pinned ``spec.replicas``. A spec too broken to read is left to the
    reconcile, which reports it.
    """
    spec = body.get("spec") or {}
    auto = (spec.get("speculation") or {}).get("mode", "Auto") == "Auto" and bool(
        spec.get("speculator")
    )
    scaling = spec.get("autoscaling") or {}
    try:
        ranged = spec.get("replicas") is None and int(scaling.get("maxReplicas", 1)) > int(
            scaling.get("minReplicas", 1)
        )
    except (TypeError, ValueError):
        ranged = False
    return auto or ranged


async def evaluate_forever(
    reconciler: Reconciler, settings: OperatorSettings, stop: asyncio.Event
) -> None:
    """Every ``evaluation_seconds``, one closed-loop cycle per resource that needs it."""
    limit = asyncio.Semaphore(4)

    async def one(body: dict[str, Any]) -> None:
        async with limit:
            await reconciler.reconcile(body, trigger="evaluate")

    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.evaluation_seconds)
        if stop.is_set():
            return
        try:
            scope: list[str | None] = list(settings.namespaces) or [None]
            bodies = await reconciler.list_resources(scope)
            await asyncio.gather(*(one(b) for b in bodies if wants_policy_body(b)))
        except Exception:  # one bad round must not end the loop; the next one retries
            log.exception("evaluation round failed")


def register(
    registry: kopf.OperatorRegistry, reconciler: Reconciler, settings: OperatorSettings
) -> None:
    """Register every handler on ``registry`` (no global state, so tests can run several)."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_via_client(**kwargs)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="resource")
    async def on_resource(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        raw = plain(body)
        if event.get("type") == "DELETED":
            reconciler.forget(raw)
            return
        if reconciler.needs_cycle(raw):
            await reconciler.reconcile(raw, trigger="change")

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        id="child",
        labels={MANAGED_BY_LABEL: "specops"},
    )
    async def child(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        owner = owner_of(body)
        namespace = body.get("metadata", {}).get("namespace")
        if owner is None or namespace is None:
            return
        deleted = event.get("type") == "DELETED"
        if not deleted and not reconciler.child_needs_attention(plain(body)):
            return
        await reconciler.reconcile_named(
            str(namespace),
            owner[0],
            uid=owner[1],
            trigger="child-deleted" if deleted else "child-changed",
        )
