"""Kubernetes quantities, just enough to add memory sizes (the limit includes /dev/shm)."""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIX = {
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "m": Decimal("0.001"),
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
GI = 2**30
MI = 2**20


def to_bytes(value: str | int) -> int:
    """A memory quantity in bytes (rounded up)."""
    if isinstance(value, int):
        return value
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    amount = Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def format_bytes(value: int) -> str:
    """Bytes as the shortest exact binary quantity (``34Gi``, ``1536Mi``, ``1000``)."""
    if value % GI == 0:
        return f"{value // GI}Gi"
    if value % MI == 0:
        return f"{value // MI}Mi"
    return str(value)
