"""Adapter over the ``kubernetes`` client: the only module talking to the API server.

Everything here is I/O at the edge: server-side apply under the ``specops``
field manager, pruning by label and owner, Events, status writes and the
leader Lease. Decisions about *what* to write live in the pure modules and in
:mod:`specops.controller.reconcile`.
"""

from specops.kube.client import FIELD_MANAGER, KubeClient, KubeError, load_api_client

__all__ = ["FIELD_MANAGER", "KubeClient", "KubeError", "load_api_client"]
