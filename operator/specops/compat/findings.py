"""Findings: what a check reports, with a stable code a machine can match on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem: ``code`` is stable (CamelCase), ``message`` says what to change."""

    code: str
    severity: Severity
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


def error(code: str, message: str) -> Finding:
    return Finding(code, "error", message)


def warning(code: str, message: str) -> Finding:
    return Finding(code, "warning", message)


def has_errors(findings: list[Finding]) -> bool:
    """True when any finding is an error (warnings still allow serving)."""
    return any(f.severity == "error" for f in findings)


CODES = (
    "InvalidConfig",
    "NotSpeculatorsFormat",
    "UnsupportedSpeculatorType",
    "VerifierMismatch",
    "LocalVerifierPath",
    "VocabSizeMismatch",
    "HiddenSizeMismatch",
    "AuxLayerOutOfRange",
    "SpeculativeTokensAboveTrained",
    "HeadsNotDivisible",
    "InsufficientGpuMemory",
    "ContextLengthExceeded",
)
"""Every code :func:`specops.compat.check` can return; documented, never renamed."""
