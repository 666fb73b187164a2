"""An in-memory API server behind :class:`KubeClient`, recording every call.

It implements exactly the semantics the operator's safety rests on, as the
real kube-apiserver 1.34 does (measured; the integration tests run the real
one): server-side apply with a ``metadata.resourceVersion`` that is not the
stored one is 409 Conflict; with a ``metadata.uid`` that is not the stored
one, 422 (uid is immutable); an apply to a missing object creates it with a
fresh uid, ignoring a given resourceVersion, unless it names a uid (409);
POST of an existing name is 409 AlreadyExists. Objects are keyed by their raw
request path, so a path that escaped its segment would land elsewhere and show
up in :attr:`FakeKube.calls`.
"""

from __future__ import annotations

import base64
import copy
import itertools
from typing import Any
from urllib.parse import unquote

from kubernetes import client

from specops.kube.client import KubeClient, KubeError

_APPLY = "application/apply-patch+yaml"

#: A token no test output may ever contain (conditions, Events, logs, metrics).
MARKER = "hf_MARKER_5e3c0b9d71a24f6e8c1d2b3a4f5e6d7c"


class FakeKube(KubeClient):
    def __init__(self) -> None:
        super().__init__(client.ApiClient(client.Configuration()))
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        #: (method, path, body) of every call with a body.
        self.writes: list[tuple[str, str, Any]] = []
        self.events: list[dict[str, Any]] = []
        #: (method, path suffix) -> error raised instead of answering.
        self.failures: dict[tuple[str, str], Exception] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ set-up helpers

    def put(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` at ``path`` as if someone else had created it."""
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._ids)}")
        meta["resourceVersion"] = str(next(self._ids))
        meta.setdefault("managedFields", [{"manager": "someone-else", "operation": "Update"}])
        self.objects[path] = stored
        return stored

    def secret(
        self, namespace: str, name: str, data: dict[str, str], labels: dict[str, str] | None
    ) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.put(
            f"/api/v1/namespaces/{namespace}/secrets/{name}",
            {
                "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                "data": encoded,
            },
        )

    # ------------------------------------------------------------------ the API

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        self.calls.append((method, path))
        if body is not None:
            self.writes.append((method, path, copy.deepcopy(body)))
        for (fail_method, suffix), exc in self.failures.items():
            if fail_method == method and path.endswith(suffix):
                raise exc
        params = dict(query or [])
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            items = self._list(path, params.get("labelSelector"))
            if items is not None:
                return {"items": items}
            raise KubeError(404, "NotFound", f"{path} not found", retryable=False)
        if method == "POST":
            if path.endswith("/events"):
                self.events.append(copy.deepcopy(body))
                return body
            target = f"{path}/{body['metadata']['name']}"
            if target in self.objects:
                raise KubeError(409, "AlreadyExists", f"{target} already exists", retryable=True)
            return self._store(target, body, params.get("fieldManager", ""), "Update")
        if method == "PATCH" and content_type == _APPLY:
            return self._apply(path, body, params.get("fieldManager", ""))
        if method == "PATCH" and path.endswith("/status"):
            target = path.removesuffix("/status")
            if target not in self.objects:
                raise KubeError(404, "NotFound", "gone", retryable=False)
            status = dict(self.objects[target].get("status") or {})
            for key, value in body["status"].items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
            self.objects[target]["status"] = status
            return copy.deepcopy(self.objects[target])
        if method == "DELETE":
            if self.objects.pop(path, None) is None:
                raise KubeError(404, "NotFound", "gone", retryable=False)
            return {}
        raise AssertionError(f"unexpected call {method} {path}")

    def _list(self, path: str, selector: str | None) -> list[dict[str, Any]] | None:
        parts = path.strip("/").split("/")
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        collection = len(rest) == 3 if rest[:1] == ["namespaces"] else len(rest) == 1
        if not collection:
            return None
        prefix = path + "/"
        wanted = dict(part.split("=", 1) for part in selector.split(",")) if selector else {}
        found = []
        for key, obj in self.objects.items():
            rest = key[len(prefix) :] if key.startswith(prefix) else None
            if rest is None or "/" in rest:
                continue
            labels = obj.get("metadata", {}).get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                found.append(copy.deepcopy(obj))
        return found

    def _store(self, path: str, body: dict[str, Any], manager: str, op: str) -> dict[str, Any]:
        stored = copy.deepcopy(body)
        meta = stored.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        meta["uid"] = f"uid-{next(self._ids)}"
        meta["resourceVersion"] = str(next(self._ids))
        meta["managedFields"] = [{"manager": manager, "operation": op}]
        self.objects[path] = stored
        return copy.deepcopy(stored)

    def _apply(self, path: str, body: dict[str, Any], manager: str) -> dict[str, Any]:
        live = self.objects.get(path)
        given = body.get("metadata") or {}
        if live is None:
            if given.get("uid"):
                raise KubeError(409, "Conflict", "uid mismatch: no existing object", retryable=True)
            return self._store(path, body, manager, "Apply")  # a given resourceVersion is ignored
        meta = live["metadata"]
        if given.get("resourceVersion") and given["resourceVersion"] != meta["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified", retryable=True)
        if given.get("uid") and given["uid"] != meta["uid"]:
            raise KubeError(422, "Invalid", "metadata.uid: field is immutable", retryable=False)
        merged = copy.deepcopy(body)
        merged_meta = merged.setdefault("metadata", {})
        merged_meta.update(
            uid=meta["uid"],
            resourceVersion=str(next(self._ids)),
            managedFields=[
                *[m for m in meta.get("managedFields", []) if m["manager"] != manager],
                {"manager": manager, "operation": "Apply"},
            ],
        )
        if "status" in live:
            merged["status"] = live["status"]
        self.objects[path] = merged
        return copy.deepcopy(merged)

    # ------------------------------------------------------------------ assertions

    def requested(self, method: str | None = None) -> list[str]:
        """Paths called (with ``method``), percent-decoded."""
        return [unquote(p) for m, p in self.calls if method is None or m == method]
