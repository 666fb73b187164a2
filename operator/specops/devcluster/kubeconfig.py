"""Kubeconfig documents with inline credentials.

Inline data (rather than paths into the state directory) keeps a kubeconfig valid
when copied elsewhere, e.g. into a CI artifact or another engineer's shell.
"""

from __future__ import annotations

import base64
from typing import Any


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build(
    *,
    cluster_name: str,
    server: str,
    ca_pem: bytes,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    user: str = "admin",
) -> dict[str, Any]:
    """Return a one-context kubeconfig whose current context is ``specops-<name>``."""
    context = f"specops-{cluster_name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": f"{context}-{user}",
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": f"{context}-{user}"},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
