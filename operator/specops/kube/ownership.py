"""Writing a child only onto an object the resource controls: no adoption by force.

Server-side apply with ``force`` is how the operator takes back fields someone
edited by hand on its own children. Aimed at a same-named object SpecOps never
created (a tenant names a SpeculativeDeployment after another team's
Deployment or Service), it would take that object over: rewrite its spec, add
an owner reference, let the garbage collector delete it with the resource.
:class:`ChildApplier` never writes to such an object, and never with a window
between checking and writing. Every apply carries a precondition the API
server enforces:

- A child not yet known to this process is applied *create-only*: with
  ``metadata.resourceVersion: "1"``. On a missing object the API server
  creates it (an apply that creates ignores the resourceVersion); on any
  existing object it answers 409, because no live namespaced object can have
  resourceVersion 1 (etcd revision 1 is the first write of the cluster's
  life, long before any namespace existed). A new resource's children thus
  cost one apply each, as before, and a creation through apply leaves the
  ``specops`` manager the sole owner of exactly the fields it applied (a POST
  would leave an ``Update`` entry co-owning every field, so fields dropped
  from a later render would never be removed).
- On that 409 the object is read. Controlled by the resource (an
  ownerReference with ``controller: true`` and the resource's uid): it is
  applied with force and the resourceVersion just read, so an object replaced
  or re-owned in between fails with 409 (retried) instead of being written.
  Not controlled: :class:`NotOwned`, and nothing is written.
- A child created or verified earlier in this process is applied with its
  ``metadata.uid`` as the precondition and no read: the API server refuses an
  apply whose uid differs from the stored object's (422, uid is immutable) or
  finds no object (409). Either way the child is forgotten and checked afresh
  as above, so a child deleted and re-created by someone else meanwhile is
  never written. Steady-state cycles cost one apply per child; the first
  cycle after a restart reads each child once.
"""

from __future__ import annotations

from typing import Any

from specops.kube.client import KubeClient, KubeError
from specops.kube.kinds import kind_of, object_key

ChildKey = tuple[str, str, str]

#: The resourceVersion that makes an apply create-only (see the module docstring).
CREATE_ONLY = "1"


class NotOwned(Exception):
    """A same-named object exists and the resource does not control it."""

    def __init__(self, kind: str, namespace: str, name: str) -> None:
        super().__init__(
            f"{kind} {namespace}/{name} already exists and is not controlled by this "
            "SpeculativeDeployment; SpecOps never takes over an object it did not create: "
            f"delete or rename that {kind}, or give this resource another name"
        )
        self.kind = kind
        self.name = name


def controlled_by(obj: dict[str, Any], owner_uid: str) -> bool:
    """Whether ``obj`` has a controller ownerReference to the object with ``owner_uid``."""
    if not owner_uid:
        return False
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") is True and ref.get("uid") == owner_uid for ref in refs)


def with_precondition(obj: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    """``obj`` with ``metadata.<field>`` set (a copy; the rendered object is untouched)."""
    return {**obj, "metadata": {**(obj.get("metadata") or {}), field: value}}


class ChildApplier:
    """Applies children; remembers, per process, which live objects are the resource's."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        #: owner uid -> child (apiVersion, kind, name) -> the child's uid.
        self._verified: dict[str, dict[ChildKey, str]] = {}

    async def apply(self, owner_uid: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or apply ``obj``; raises :class:`NotOwned` or :class:`KubeError`."""
        key = object_key(obj)
        known = self._verified.get(owner_uid, {}).get(key)
        if known is not None:
            try:
                applied = await self.kube.apply(with_precondition(obj, "uid", known))
            except KubeError as exc:
                if exc.status not in (409, 422):
                    raise
                self.forget_child(owner_uid, key)  # gone or replaced: check afresh
            else:
                return self._remember(owner_uid, key, applied)
        try:
            created = await self.kube.apply(with_precondition(obj, "resourceVersion", CREATE_ONLY))
        except KubeError as exc:
            if exc.status != 409:
                raise
        else:
            return self._remember(owner_uid, key, created)
        return await self._apply_existing(owner_uid, key, obj)

    async def _apply_existing(
        self, owner_uid: str, key: ChildKey, obj: dict[str, Any]
    ) -> dict[str, Any]:
        kind = kind_of(obj)
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        live = await self.kube.get(kind, namespace, name)
        if live is None:
            raise KubeError(
                409, "Conflict", f"{kind.kind} {name} was deleted meanwhile", retryable=True
            )
        if not controlled_by(live, owner_uid):
            raise NotOwned(kind.kind, namespace, name)
        version = str((live.get("metadata") or {}).get("resourceVersion") or "")
        applied = await self.kube.apply(with_precondition(obj, "resourceVersion", version))
        return self._remember(owner_uid, key, applied)

    def _remember(self, owner_uid: str, key: ChildKey, live: dict[str, Any]) -> dict[str, Any]:
        uid = (live.get("metadata") or {}).get("uid")
        if uid and controlled_by(live, owner_uid):
            self._verified.setdefault(owner_uid, {})[key] = str(uid)
        return live

    def forget_child(self, owner_uid: str, key: ChildKey) -> None:
        """Drop one child (pruned, or found changed): the next apply checks it again."""
        children = self._verified.get(owner_uid)
        if children is not None:
            children.pop(key, None)
            if not children:
                del self._verified[owner_uid]

    def forget(self, owner_uid: str) -> None:
        """Drop everything about a deleted resource."""
        self._verified.pop(owner_uid, None)
