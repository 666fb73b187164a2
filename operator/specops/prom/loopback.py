"""The one rule every dev/twin component dials by: loopback only.

Pods on kwok nodes carry fake IPs and the machine may sit on a real network;
a typo must never make a test scrape or load something outside 127.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_ADDRESS_REGEX = r"(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost):\d+"
"""Prometheus relabel regex (fully anchored by Prometheus) for loopback targets."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any address in 127.0.0.0/8 (or ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_loopback_url(url: str) -> str:
    """Return ``url`` unchanged if it points at loopback, else raise ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    if not is_loopback_host(parts.hostname):
        raise ValueError(
            f"{url!r} is not a loopback address; only 127.0.0.0/8 may be dialed "
            "(use `kubectl port-forward` to reach a remote endpoint)"
        )
    return url
