"""A small async facade over the blocking ``kubernetes`` client.

Why raw ``call_api`` instead of the typed ``AppsV1Api``/dynamic client: the
operator writes dicts produced by the renderer, of a handful of kinds, and
needs server-side apply for all of them; one generic path per verb keeps that
uniform and avoids discovery round trips at start-up. Every blocking call
runs in a worker thread so kopf's event loop never stalls, and one
``ApiClient`` (one connection pool) is shared for the process lifetime.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from specops.kube.kinds import SPECULATIVE_DEPLOYMENT, Kind, kind_of

FIELD_MANAGER = "specops"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class KubeError(Exception):
    """An API call that failed; ``retryable`` says whether trying again can help."""

    def __init__(self, status: int, reason: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{reason} ({status}): {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retryable = retryable


def _classify(exc: Exception) -> KubeError:
    """Turn client exceptions into :class:`KubeError` (retryable: 408/409/429/5xx, network)."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = str(exc.reason or "")
        reason = str(exc.reason or "Error")
        try:
            body = json.loads(exc.body or "{}")
            message = str(body.get("message") or message)
            reason = str(body.get("reason") or reason)
        except (TypeError, ValueError):
            pass
        return KubeError(
            status, reason, message, retryable=status in _RETRYABLE_STATUS or not status
        )
    return KubeError(0, "Unreachable", f"API server unreachable: {exc}", retryable=True)


def load_api_client(kubeconfig: str | None = None, *, pool_size: int = 16) -> k8s.ApiClient:
    """In-cluster config when running in a pod, else ``KUBECONFIG`` / ``~/.kube/config``."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig is None:
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            raise ConfigException("explicit kubeconfig")
    except ConfigException:
        try:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            raise KubeError(
                0, "NoConfig", f"no usable kubeconfig or in-cluster config: {exc}", retryable=False
            ) from None
    configuration.connection_pool_maxsize = pool_size
    return k8s.ApiClient(configuration)


class KubeClient:
    """The verbs the operator uses, each one API call, run off the event loop."""

    def __init__(self, api: k8s.ApiClient, *, field_manager: str = FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager

    # ------------------------------------------------------------------ plumbing

    def _call_sync(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        try:
            return self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=timeout,
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _classify(exc) from None

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call in a worker thread; raises :class:`KubeError`."""
        return await asyncio.to_thread(
            self._call_sync, method, path, query=query, body=body, content_type=content_type
        )

    # ------------------------------------------------------------------ generic verbs

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the ``specops`` field manager, forcing owned fields.

        ``force`` takes back fields someone edited by hand (drift repair);
        fields nobody in ``obj`` mentions stay with whoever set them.
        """
        kind = kind_of(obj)
        meta = obj.get("metadata", {})
        path = kind.object_path(meta.get("namespace"), str(meta["name"]))
        result: dict[str, Any] = await self.call(
            "PATCH",
            path,
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=obj,
            content_type=_APPLY,
        )
        return result

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One object, or ``None`` when it does not exist."""
        try:
            result: dict[str, Any] = await self.call("GET", kind.object_path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def list_objects(
        self, kind: Kind, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a kind; an API group that is not installed lists as empty."""
        query = [("labelSelector", label_selector)] if label_selector else []
        try:
            result = await self.call("GET", kind.collection_path(namespace), query=query)
        except KubeError as exc:
            if exc.status == 404:
                return []
            raise
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> bool:
        """Delete in the background (dependents via GC); ``False`` if already gone."""
        try:
            await self.call(
                "DELETE",
                kind.object_path(namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def create(self, kind: Kind, namespace: str | None, obj: dict[str, Any]) -> Any:
        """POST a new object (Events, Leases), attributed to our field manager."""
        return await self.call(
            "POST",
            kind.collection_path(namespace),
            query=[("fieldManager", self.field_manager)],
            body=obj,
        )

    async def replace(self, kind: Kind, namespace: str | None, obj: dict[str, Any]) -> Any:
        """PUT an object (optimistic concurrency via its resourceVersion)."""
        name = str(obj["metadata"]["name"])
        return await self.call("PUT", kind.object_path(namespace, name), body=obj)

    # ------------------------------------------------------------------ specific

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch ``status`` of a SpeculativeDeployment; ``None`` if it is gone.

        Only the status subresource is written: the spec belongs to the user
        (and GitOps), so the operator never produces drift there.
        """
        path = SPECULATIVE_DEPLOYMENT.object_path(namespace, name) + "/status"
        try:
            result: dict[str, Any] = await self.call(
                "PATCH", path, body={"status": status}, content_type=_MERGE
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result
