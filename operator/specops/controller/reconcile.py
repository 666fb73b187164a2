"""One reconcile cycle: gather, decide, apply, record.

Every trigger (create, update, resume, the periodic resync, an event on an
owned Deployment) runs the same :meth:`Reconciler.reconcile`, serialised per
resource, so there is one code path to reason about and to test:

1. gather: parse the resource, resolve both models (cached by commit SHA);
2. decide: compatibility and sizing verdicts, then the speculation/replica
   decision (:mod:`specops.controller.decision`, the policy seam);
3. apply: render, server-side apply every child under the ``specops`` field
   manager (forcing back hand edits), prune children no longer rendered;
4. record: build the whole status, write it once if it changed, post Events
   for the transitions.

A spec that cannot be applied (models missing, incompatible, does not fit)
changes no child: whatever an earlier, good generation created keeps
serving, and the conditions say so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from specops.api.redact import redact
from specops.api.v1alpha1 import (
    HUB_TOKEN_SECRET_LABEL,
    ResolvedModelStatus,
    ResolvedStatus,
    SpeculativeDeployment,
    SpeculativeDeploymentStatus,
)
from specops.controller import checks, decision, status
from specops.controller.events import events_for
from specops.controller.loop import PolicyLoop, default_loop, loop_events, rollout_for
from specops.controller.status import Findings, Verdict, Workload
from specops.hub import HubError, ResolvedModel, Resolver
from specops.kube.client import KubeClient, KubeError
from specops.kube.events import EventRecorder
from specops.kube.hubtoken import read_hub_token
from specops.kube.kinds import CHILD_KINDS, SPECULATIVE_DEPLOYMENT, kind_of, object_key
from specops.kube.ownership import ChildApplier, NotOwned
from specops.kube.prune import stale_children
from specops.metrics import OperatorMetrics, ResourceState
from specops.render import RenderError, RenderOptions, render, selector_string
from specops.render.images import parse_rules
from specops.settings import OperatorSettings

log = logging.getLogger(__name__)

Outcome = Literal["applied", "blocked", "retry", "error", "gone"]
DEPLOYMENT = next(k for k in CHILD_KINDS if k.kind == "Deployment")
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=specops"
#: API groups that may legitimately be absent (the Prometheus Operator's).
OPTIONAL_GROUPS = frozenset({"monitoring.coreos.com"})


#: Cycles running at once; more queue. Bounds memory and API server load when many
#: resources change together (a restart, a bulk apply). Measured: 8 gives the same
#: throughput as 12 or 16 (the API server is the limit) at a lower peak RSS.
MAX_CONCURRENT_RECONCILES = 8

#: Consecutive retries after a transient API error (409, 5xx, unreachable) that are not
#: reported in the status: a conflict resolves itself on the next cycle, and an API
#: server that is down would refuse the status write too.
QUIET_RETRIES = 2
#: Longest exception text put into a condition (the traceback is only logged at DEBUG).
MAX_FAILURE_MESSAGE = 2048

#: Triggers whose body may be stale by the time the resource's lock is held.
REFETCH_TRIGGERS = frozenset({"resync", "evaluate", "child-changed", "child-deleted", "retry"})


class _Gone(Exception):
    """The resource was deleted (or replaced) before its cycle started."""


@dataclass(frozen=True)
class Result:
    """How a cycle ended; ``retry_after`` is set when trying again later can help."""

    outcome: Outcome
    message: str = ""
    retry_after: float | None = None


def backoff(
    retry: int, *, base: float = 5.0, cap: float = 300.0, hint: float | None = None
) -> float:
    """Growing delay for the ``retry``-th retry (0-based), at least ``hint`` (Retry-After)."""
    delay = min(cap, base * 2.0 ** max(0, retry))
    if hint is not None:
        delay = min(cap, max(delay, hint))
    return delay


def with_generation(obj: dict[str, Any], generation: int) -> dict[str, Any]:
    """Mark a Deployment with the resource generation it renders (metadata only:
    the pod template stays untouched, so this never restarts vLLM)."""
    if obj.get("kind") != "Deployment":
        return obj
    meta = dict(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    annotations[status.GENERATION_ANNOTATION] = str(generation)
    meta["annotations"] = annotations
    return {**obj, "metadata": meta}


def token_secret_message(namespace: str, name: str, key: str) -> str:
    """The one message for every way the token Secret can be unusable.

    Missing Secret, missing label, missing key and an unusable value read the
    same, so the message is no oracle for what exists in the namespace, and it
    names only what the spec already says (never anything read from a Secret).
    """
    return (
        f"no usable Hub token in Secret {namespace}/{name}, key {key} (spec.hfTokenSecretRef): "
        f'create that Secret with the label {HUB_TOKEN_SECRET_LABEL}: "true" and the token '
        "(visible ASCII, one line) under that key; the operator retries until it can read it"
    )


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """Whether ``obj`` names the resource with ``uid`` as an owner."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


class Reconciler:
    """Holds the process-wide caches and clients; one per operator process."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeClient,
        recorder: EventRecorder,
        metrics: OperatorMetrics,
        *,
        resolver: Resolver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        loop: PolicyLoop | None = None,
        max_concurrent: int = MAX_CONCURRENT_RECONCILES,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.recorder = recorder
        self.metrics = metrics
        # Tenants write the model references: local paths only inside the admin's
        # directories, files capped, and no implicit HF_TOKEN for a resource without one.
        self.resolver = resolver or Resolver(
            revision_ttl=min(settings.resync_seconds, 60.0),
            max_file_bytes=settings.max_model_file_bytes,
            allowed_dirs=settings.allowed_model_dirs,
            implicit_token=False,
        )
        self.clock = clock
        self.options = RenderOptions(
            hf_endpoint=settings.hub_endpoint, prometheus_namespace=settings.prometheus_namespace
        )
        self.image_rules = parse_rules(settings.allowed_images)
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        #: Generation each resource was last cycled at, in this process.
        self._seen: dict[str, int] = {}
        self._retry_counts: dict[str, int] = {}
        self._retry_tasks: dict[str, asyncio.Task[None]] = {}
        self._children: dict[str, frozenset[tuple[str, str, str]]] = {}
        self._last: dict[str, Findings] = {}
        #: Models each resource names: what the resolver's caches must keep.
        self._models: dict[str, frozenset[str]] = {}
        #: Writes children, never onto an object the resource does not control.
        self.children = ChildApplier(kube)
        #: The closed loop (speculation + autoscaling from Prometheus); see controller.loop.
        self.loop = loop or default_loop(settings.prometheus_url, kube)

    # ------------------------------------------------------------------ entry points

    async def reconcile(
        self, body: dict[str, Any], *, retry: int = 0, trigger: str = "change"
    ) -> Result:
        """Run one cycle for ``body`` (serialised per resource), recording metrics.

        A cycle that ends in ``retry`` schedules the next attempt itself, with a
        delay that doubles per consecutive retry of the resource; any other end
        cancels a pending retry. ``retry`` is only a floor for that count.
        """
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        retry = max(retry, self._retry_counts.get(uid, 0))
        lock = self._locks.setdefault(uid, asyncio.Lock())
        # A slot first, then the resource's lock: every lock holder owns a slot, so
        # waiting for a lock while holding a slot cannot deadlock.
        async with self._slots, lock:
            started = time.monotonic()
            try:
                if trigger in REFETCH_TRIGGERS:
                    # Read inside the lock: a body listed or queued earlier may predate
                    # a spec change another cycle already applied; re-applying it would
                    # roll the Deployment back and forth.
                    fresh = await self.kube.get(
                        SPECULATIVE_DEPLOYMENT, str(meta.get("namespace")), str(meta.get("name"))
                    )
                    if fresh is None or (uid and fresh["metadata"].get("uid") != uid):
                        raise _Gone
                    body = fresh
                result = await self._cycle(body, retry=retry, trigger=trigger)
            except _Gone:
                result = Result("gone", "deleted meanwhile")
            except KubeError as exc:
                if exc.retryable and retry < QUIET_RETRIES:
                    result = Result("retry", str(exc), backoff(retry, base=1.0, cap=60.0))
                else:
                    result = await self._failed(body, exc, retry)
            except Exception as exc:  # the cycle's last line: a condition, never a traceback
                result = await self._failed(body, exc, retry)
        self.metrics.observe(result.outcome, time.monotonic() - started)
        self._settle(body, result)
        log.debug(
            "reconciled %s/%s (%s): %s %s",
            meta.get("namespace"),
            meta.get("name"),
            trigger,
            result.outcome,
            result.message,
        )
        return result

    def needs_cycle(self, body: dict[str, Any]) -> bool:
        """Whether an event on the resource calls for a cycle: first sight in this
        process (the operator started) or a new spec generation. The echo of our
        own status write, and a spec already refused, do not."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        return self._seen.get(uid) != int(meta.get("generation") or 0)

    def _settle(self, body: dict[str, Any], result: Result) -> None:
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        if result.outcome == "gone":
            return
        self._seen[uid] = int(meta.get("generation") or 0)
        pending = self._retry_tasks.pop(uid, None)
        if pending is not None and pending is not asyncio.current_task():
            pending.cancel()
        if result.outcome != "retry":
            self._retry_counts.pop(uid, None)
            return
        self._retry_counts[uid] = self._retry_counts.get(uid, 0) + 1
        self._retry_tasks[uid] = asyncio.create_task(
            self._retry_later(
                str(meta.get("namespace")), str(meta.get("name")), uid, result.retry_after or 5.0
            )
        )

    async def _retry_later(self, namespace: str, name: str, uid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.reconcile_named(namespace, name, uid=uid, trigger="retry")

    def close(self) -> None:
        """Cancel pending retries (the operator is stopping or lost the Lease)."""
        for task in self._retry_tasks.values():
            task.cancel()
        self._retry_tasks.clear()

    async def reconcile_named(
        self, namespace: str, name: str, *, trigger: str, uid: str = ""
    ) -> Result:
        """Reconcile a resource known by name (a child's event); it is read inside the lock."""
        stub = {"metadata": {"namespace": namespace, "name": name, "uid": uid}}
        if trigger not in REFETCH_TRIGGERS:
            raise ValueError(f"trigger {trigger!r} does not re-read the resource")
        return await self.reconcile(stub, trigger=trigger)

    async def list_resources(self, namespaces: list[str | None]) -> list[dict[str, Any]]:
        """Every SpeculativeDeployment in the watched namespaces (``None``: all)."""
        found: list[dict[str, Any]] = []
        for namespace in namespaces:
            for item in await self.kube.list_objects(SPECULATIVE_DEPLOYMENT, namespace):
                found.append(
                    {
                        **item,
                        "apiVersion": SPECULATIVE_DEPLOYMENT.api_version,
                        "kind": "SpeculativeDeployment",
                    }
                )
        return found

    def child_needs_attention(self, deployment: dict[str, Any]) -> bool:
        """Whether an event on an owned Deployment calls for a reconcile of its owner.

        Yes when the Deployment's spec changed behind our back (its generation
        moved since we last saw it: a hand edit to repair) or when its status
        changes what we report (Ready, replica counts). No for the echo of our
        own apply, which would otherwise double the work of every cycle.
        """
        refs = (deployment.get("metadata") or {}).get("ownerReferences") or []
        uids = [str(ref.get("uid")) for ref in refs if ref.get("controller")]
        if not uids:
            return False
        last = self._last.get(uids[0])
        lock = self._locks.get(uids[0])
        if last is None and lock is not None and lock.locked():
            return False  # the echo of the cycle running now, which records the result
        if last is None or not last.workload.exists:
            return True
        now = Workload.from_deployment(deployment)
        if now.object_generation != last.workload.object_generation:
            return True
        return _reported(last, last.workload) != _reported(last, now)

    def forget(self, body: dict[str, Any]) -> None:
        """Drop the caches of a deleted resource."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        self._locks.pop(uid, None)
        self._children.pop(uid, None)
        self.children.forget(uid)
        self._last.pop(uid, None)
        self._seen.pop(uid, None)
        self._retry_counts.pop(uid, None)
        task = self._retry_tasks.pop(uid, None)
        if task is not None:
            task.cancel()
        self.recorder.limiter.forget(uid)
        self.loop.forget(uid)
        self.metrics.forget(str(meta.get("namespace")), str(meta.get("name")))
        if self._models.pop(uid, None) is not None:
            # The deleted resource's configs leave memory now, not when the LRU evicts them.
            self.resolver.forget_unused(frozenset().union(*self._models.values()))

    # ------------------------------------------------------------------ the cycle

    async def _cycle(self, body: dict[str, Any], *, retry: int, trigger: str = "change") -> Result:
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return Result("gone", "being deleted; the garbage collector removes the children")
        namespace, name = str(meta["namespace"]), str(meta["name"])
        uid = str(meta.get("uid", ""))
        generation = int(meta.get("generation") or 0)
        old_raw = body.get("status") or {}
        old = status.parse_status(old_raw)

        try:
            resource = SpeculativeDeployment.model_validate(body)
        except ValidationError as exc:
            text = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            findings = Findings(
                generation,
                Verdict("Unknown", "InvalidSpec", "the spec is not valid"),
                Verdict("False", "InvalidSpec", text),
                workload=await self._live_workload(namespace, name, uid),
            )
            await self._record(body, old_raw, old, findings)
            return Result("blocked", text)
        spec = resource.spec
        self._models[uid] = frozenset(
            m.model for m in (spec.verifier, spec.speculator) if m is not None
        )

        # ---- gather: the Hub token, then the models
        # The operator's own token serves tenants' resources only if the admin says so.
        token = self.settings.hub_token if self.settings.hub_token_for_tenants else None
        ref = spec.hf_token_secret_ref
        if ref is not None:
            token = await read_hub_token(self.kube, namespace, ref.name, ref.key)
            if token is None:
                text = token_secret_message(namespace, ref.name, ref.key)
                findings = Findings(
                    generation,
                    Verdict("False", "TokenSecretNotFound", text),
                    Verdict("Unknown", "ModelsNotResolved", "waiting for the models to resolve"),
                    workload=await self._live_workload(namespace, name, uid),
                    selector=selector_string(name),
                )
                await self._record(body, old_raw, old, findings)
                delay = backoff(retry, base=10.0, cap=self.settings.hub_retry_max_seconds)
                return Result("retry", text, delay)
        try:
            verifier = await self._resolve(spec.verifier.model, spec.verifier.revision, token)
            speculator = None
            if spec.speculator is not None:
                speculator = await self._resolve(
                    spec.speculator.model, spec.speculator.revision, token
                )
        except HubError as exc:
            permanent = exc.permanent
            verdict = Verdict("False" if permanent else "Unknown", exc.reason, str(exc))
            findings = Findings(
                generation,
                verdict,
                Verdict("Unknown", "ModelsNotResolved", "waiting for the models to resolve"),
                workload=await self._live_workload(namespace, name, uid),
                selector=selector_string(name),
            )
            await self._record(body, old_raw, old, findings)
            if permanent:
                return Result("blocked", str(exc))
            hint = getattr(exc, "retry_after", None)
            delay = backoff(retry, cap=self.settings.hub_retry_max_seconds, hint=hint)
            return Result("retry", str(exc), delay)

        resolved = ResolvedStatus(
            verifier=ResolvedModelStatus(
                model=verifier.ref, revision=verifier.revision, sha=verifier.sha
            ),
            speculator=None
            if speculator is None
            else ResolvedModelStatus(
                model=speculator.ref, revision=speculator.revision, sha=speculator.sha
            ),
        )
        resolved_verdict = Verdict("True", "Resolved", _describe(verifier, speculator))

        # ---- decide
        checked = checks.check(spec, verifier, speculator, image_rules=self.image_rules)
        if checked.plan is None:
            findings = Findings(
                generation,
                resolved_verdict,
                checked.verdict,
                resolved_models=resolved,
                workload=await self._live_workload(namespace, name, uid),
                selector=selector_string(name),
            )
            await self._record(body, old_raw, old, findings)
            return Result("blocked", checked.verdict.message)
        plan = checked.plan
        render_decision, spec_verdict, scale_reason = decision.decide(
            spec, speculator.config if speculator else None
        )
        looped = await self.loop.evaluate(
            resource,
            plan,
            verifier,
            speculator,
            (render_decision, spec_verdict, scale_reason),
            fresh=trigger == "evaluate",
        )
        if looped is not None:
            render_decision, spec_verdict = looped.render, looped.speculation
            scale_reason = looped.scale_reason
        try:
            objects = render(resource, resolved, plan, render_decision, options=self.options)
        except RenderError as exc:
            findings = Findings(
                generation,
                resolved_verdict,
                Verdict("False", "RenderFailed", str(exc)),
                resolved_models=resolved,
                plan=plan,
                workload=await self._live_workload(namespace, name, uid),
                selector=selector_string(name),
            )
            await self._record(body, old_raw, old, findings)
            return Result("blocked", str(exc))

        # ---- apply
        objects = [with_generation(obj, generation) for obj in objects]
        if looped is not None:
            objects = [rollout_for(obj, looped.pods, looped.surge_allowed) for obj in objects]
        for obj in objects:
            kind_of(obj)  # every rendered kind must be one we have RBAC for
        outcomes = await asyncio.gather(*(self._apply(body, obj) for obj in objects))
        applied = [live for live, _ in outcomes]
        deployment = next((a for a in applied if a and a.get("kind") == "Deployment"), None)
        failures = [failure for _, failure in outcomes if failure is not None]
        if failures:
            return await self._apply_failed(
                body,
                old_raw,
                old,
                failures,
                Findings(
                    generation,
                    resolved_verdict,
                    checked.verdict,
                    resolved_models=resolved,
                    plan=plan,
                    speculation=spec_verdict if deployment is not None else None,
                    desired_replicas=render_decision.replicas if deployment is not None else None,
                    scale_reason=scale_reason,
                    workload=Workload.from_deployment(deployment)
                    if deployment is not None
                    else await self._live_workload(namespace, name, uid),
                    selector=selector_string(name),
                ),
                retry,
            )
        keys = frozenset(object_key(obj) for obj, a in zip(objects, applied, strict=True) if a)
        # A resource never reconciled before has nothing to prune yet; its first
        # recorded cycle is followed by a child event or the resync, which prunes.
        # Nothing is pruned in a cycle where an apply failed (above): a child that
        # could not be written is still wanted.
        if self._children.get(uid) != keys and old.observed_generation is not None:
            await self._prune(namespace, uid, keys)
            self._children[uid] = keys

        findings = Findings(
            generation,
            resolved_verdict,
            checked.verdict,
            resolved_models=resolved,
            plan=plan,
            speculation=spec_verdict,
            desired_replicas=render_decision.replicas,
            scale_reason=scale_reason,
            applied=True,
            workload=Workload.from_deployment(deployment),
            selector=selector_string(name),
            extra_conditions=looped.conditions if looped is not None else (),
        )
        await self._record(body, old_raw, old, findings)
        return Result("applied")

    # ------------------------------------------------------------------ helpers

    async def _apply(
        self, owner: dict[str, Any], obj: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, Verdict | None]:
        """Apply one child: (the live object, or a verdict on why it was not written).

        An optional API that is not installed is skipped with a warning; an object
        the resource does not control, or one the API server refuses (4xx), is a
        failure the cycle reports. Transient errors (409, 5xx) are raised: retry.
        """
        kind = kind_of(obj)
        name = str((obj.get("metadata") or {}).get("name"))
        try:
            return await self.children.apply(str(owner["metadata"].get("uid", "")), obj), None
        except NotOwned as exc:
            return None, Verdict("False", status.OBJECT_NOT_OWNED, str(exc))
        except KubeError as exc:
            if exc.status == 404 and kind.group in OPTIONAL_GROUPS:
                pass
            elif 400 <= exc.status < 500 and not exc.retryable:
                return None, Verdict(
                    "False",
                    status.APPLY_REJECTED,
                    f"the API server refused {kind.kind} {name}: {exc.reason} ({exc.status}): "
                    f"{exc.message}",
                )
            else:
                raise
        message = (
            f"{kind.kind} not created: the {kind.group} API is not installed "
            "(install the Prometheus Operator or turn spec.monitoring off)"
        )
        log.warning("%s/%s: %s", owner["metadata"]["namespace"], owner["metadata"]["name"], message)
        if await self.recorder.emit(owner, "Warning", "MonitoringUnavailable", message):
            self.metrics.events.labels("MonitoringUnavailable").inc()
        return None, None

    async def _resolve(self, ref: str, revision: str, token: str | None) -> ResolvedModel:
        mirror = str(self.settings.hub_mirror) if self.settings.hub_mirror else None
        return await asyncio.to_thread(
            self.resolver.resolve,
            ref,
            revision,
            mirror_dir=mirror,
            token=token,
            endpoint=self.settings.hub_endpoint,
        )

    async def _live_workload(self, namespace: str, name: str, uid: str) -> Workload:
        live = await self.kube.get(DEPLOYMENT, namespace, name)
        if live is None or not owned_by(live, uid):
            return Workload()
        return Workload.from_deployment(live)

    async def _prune(self, namespace: str, uid: str, keep: frozenset[tuple[str, str, str]]) -> None:
        """Delete children of this owner that the renderer no longer produces."""
        listed = await asyncio.gather(
            *(
                self.kube.list_objects(kind, namespace, label_selector=MANAGED_SELECTOR)
                for kind in CHILD_KINDS
            )
        )
        live = [
            {**obj, "apiVersion": kind.api_version, "kind": kind.kind}
            for kind, items in zip(CHILD_KINDS, listed, strict=True)
            for obj in items
        ]
        for obj in stale_children(live, keep, uid):
            log.info("pruning %s %s/%s", obj["kind"], namespace, obj["metadata"]["name"])
            await self.kube.delete(kind_of(obj), namespace, obj["metadata"]["name"])
            self.children.forget_child(uid, object_key(obj))

    async def _apply_failed(
        self,
        body: dict[str, Any],
        old_raw: dict[str, Any],
        old: SpeculativeDeploymentStatus,
        failures: list[Verdict],
        findings: Findings,
        retry: int,
    ) -> Result:
        """Report children that could not be written (Ready=False, a Warning Event).

        Someone else's object may be deleted or renamed without any event reaching
        us, so a conflict is retried with a growing delay; a refused object needs a
        spec change (or an admin), which triggers a cycle by itself.
        """
        not_owned = [f for f in failures if f.reason == status.OBJECT_NOT_OWNED]
        first = (not_owned or failures)[0]
        failure = Verdict("False", first.reason, "; ".join(f.message for f in failures))
        await self._record(body, old_raw, old, replace(findings, failure=failure))
        if not_owned:
            delay = backoff(retry, base=10.0, cap=self.settings.hub_retry_max_seconds)
            return Result("retry", redact(failure.message), delay)
        return Result("blocked", redact(failure.message))

    async def _failed(self, body: dict[str, Any], exc: Exception, retry: int) -> Result:
        """An exception ended the cycle: Ready=False (ReconcileError) and a retry later.

        Only Ready changes; what the last complete cycle found stays as it was. The
        message is the exception's type and text, redacted; the traceback goes to
        the DEBUG log only, so a resource failing every retry does not flood it.
        """
        meta = body.get("metadata") or {}
        where = f"{meta.get('namespace')}/{meta.get('name')}"
        text = redact(f"{type(exc).__name__}: {exc}")[:MAX_FAILURE_MESSAGE]
        log.warning("reconcile of %s failed: %s", where, text)
        log.debug("reconcile of %s failed", where, exc_info=True)
        delay = backoff(retry, cap=self.settings.hub_retry_max_seconds)
        if "spec" not in body:
            return Result("retry", text, delay)  # never read: nothing to report it on
        verdict = Verdict(
            "False", status.RECONCILE_ERROR, f"the reconcile failed and is retried: {text}"
        )
        old_raw = body.get("status") or {}
        old = status.parse_status(old_raw)
        generation = int(meta.get("generation") or 0)
        new = status.failed_status(old, verdict, generation=generation, now=self.clock())
        try:
            await self._write(body, old_raw, old, new)
        except Exception as write_exc:  # the API server may be what failed
            log.warning("could not report the failure of %s: %s", where, redact(str(write_exc)))
        return Result("retry", text, delay)

    async def _record(
        self,
        body: dict[str, Any],
        old_raw: dict[str, Any],
        old: SpeculativeDeploymentStatus,
        findings: Findings,
    ) -> None:
        """Write the status once (only if it changed) and post Events for transitions."""
        self._last[str(body["metadata"].get("uid", ""))] = findings
        await self._write(body, old_raw, old, status.build_status(old, findings, now=self.clock()))

    async def _write(
        self,
        body: dict[str, Any],
        old_raw: dict[str, Any],
        old: SpeculativeDeploymentStatus,
        new: SpeculativeDeploymentStatus,
    ) -> None:
        meta = body["metadata"]
        self._export(meta, new)
        if status.to_wire(new) == status.to_wire(old) and old_raw:
            return
        # The Events follow from (old, new) alone, so they go out together with the
        # status write: one round trip per cycle instead of two. Should the write
        # fail, the retry derives the same Events and the limiter drops the repeats.
        events = [*events_for(old, new), *loop_events(old, new)]
        _, *posted = await asyncio.gather(
            self.kube.patch_status(
                meta["namespace"], meta["name"], status.status_patch(old_raw, new)
            ),
            *(self.recorder.emit(body, e.type, e.reason, e.message) for e in events),
        )
        for event, ok in zip(events, posted, strict=True):
            if ok:
                self.metrics.events.labels(event.reason).inc()

    def _export(self, meta: dict[str, Any], new: SpeculativeDeploymentStatus) -> None:
        spec = new.speculation
        self.metrics.set_state(
            str(meta["namespace"]),
            str(meta["name"]),
            ResourceState(
                conditions=tuple((c.type, c.status) for c in new.conditions),
                speculation_active=spec.active if spec else None,
                num_speculative_tokens=spec.num_speculative_tokens if spec else None,
                tensor_parallel_size=new.plan.tensor_parallel_size if new.plan else None,
                gpus_per_replica=new.plan.gpus_per_replica if new.plan else None,
                desired_replicas=new.autoscaling.desired_replicas if new.autoscaling else None,
            ),
        )


def _reported(findings: Findings, workload: Workload) -> tuple[Any, ...]:
    """The part of the status a Deployment's status feeds."""
    verdict = status.ready_verdict(replace(findings, workload=workload))
    return (verdict, workload.replicas, workload.ready, workload.exists)


def _describe(verifier: ResolvedModel, speculator: ResolvedModel | None) -> str:
    text = f"verifier {verifier.ref}@{verifier.revision} is {verifier.sha} ({verifier.source})"
    if speculator is not None:
        text += (
            f"; speculator {speculator.ref}@{speculator.revision} is {speculator.sha} "
            f"({speculator.source})"
        )
    return text
