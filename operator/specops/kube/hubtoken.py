"""Reading a tenant's Hub token (``spec.hfTokenSecretRef``) without becoming a Secret oracle.

The operator's ServiceAccount may ``get`` Secrets cluster-wide (namespace
scope: in every watched namespace), and whoever writes a
SpeculativeDeployment chooses which Secret it names. Three rules keep that
``get`` from being turned against the cluster:

- the Secret is read only from the resource's own namespace, by a path built
  from one quoted segment (:func:`specops.kube.kinds.segment`);
- it is used only if it carries ``serving.specops.dev/hub-token: "true"``, a
  label its owner sets on purpose, so a ServiceAccount token or a database
  password that happens to sit in the namespace is never sent to the Hub;
- every way of failing (no Secret, no label, no such key, a value that is not
  base64, not UTF-8 or not a valid HTTP header token) gives the same ``None``,
  so the condition message cannot tell a tenant which Secrets exist or what
  is in them.

Every value read is registered with :mod:`specops.api.redact` before it is
looked at, so it cannot appear in a message, an Event or a log line later.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from specops.api.redact import register_secret
from specops.api.v1alpha1 import HUB_TOKEN_SECRET_LABEL
from specops.kube.client import KubeClient
from specops.kube.kinds import SECRET, BadPathSegment

#: What may follow ``Authorization: Bearer``: visible ASCII, no space, no line break.
#: Anything else (a PEM key, a value with a trailing CR, UTF-8) is refused unread.
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")


def token_from_secret(secret: dict[str, Any] | None, key: str) -> str | None:
    """The Hub token in ``secret[key]``, or ``None`` if the Secret may not or cannot be used."""
    if not secret:
        return None
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(HUB_TOKEN_SECRET_LABEL) != "true":
        return None
    raw = (secret.get("data") or {}).get(key)
    if not isinstance(raw, str):
        return None
    register_secret(raw)
    try:
        decoded = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    register_secret(decoded)
    token = decoded.strip()
    register_secret(token)
    if not _HEADER_TOKEN.fullmatch(token):
        return None
    return token


async def read_hub_token(kube: KubeClient, namespace: str, name: str, key: str) -> str | None:
    """The labelled token Secret ``name`` of ``namespace``, or ``None`` (see the module doc).

    API errors other than 404 are raised: a Forbidden or an unreachable API
    server is the operator's problem, not an answer about the Secret.
    """
    try:
        secret = await kube.get(SECRET, namespace, name)
    except BadPathSegment:
        return None
    return token_from_secret(secret, key)
