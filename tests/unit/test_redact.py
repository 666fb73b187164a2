"""The secret registry and everything that sanitises through it (conditions, Events, logs)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from fakekube import MARKER

from specops.api import redact as registry
from specops.api.redact import REDACTED, redact, register_secret
from specops.api.v1alpha1 import SpeculativeDeploymentStatus
from specops.controller.runner import JsonFormatter, RedactingFilter, configure_logging
from specops.controller.status import Findings, Verdict, build_status, failed_status
from specops.kube.events import EventRecorder
from specops.settings import load_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.clear()
    yield
    registry.clear()


def test_every_spelling_of_a_registered_value_is_replaced() -> None:
    register_secret(MARKER)
    b64 = base64.b64encode(MARKER.encode()).decode()
    for spelled in (MARKER, b64, b64.rstrip("="), quote(MARKER, safe="")):
        text = f"401 from the Hub: token {spelled} refused"
        assert redact(text) == f"401 from the Hub: token {REDACTED} refused"
    assert redact("nothing secret here") == "nothing secret here"


def test_a_value_with_line_breaks_and_url_characters_is_found_in_each_form() -> None:
    pem = "-----BEGIN KEY-----\nMIIE+abc/def==\n-----END KEY-----"
    register_secret(pem)
    assert (
        redact(f"Invalid header value b'Bearer {pem}'")
        == f"Invalid header value b'Bearer {REDACTED}'"
    )
    assert "MIIE" not in redact(base64.b64encode(pem.encode()).decode())
    assert redact(f"?token={quote(pem, safe='')}") == f"?token={REDACTED}"


def test_short_values_are_not_registered_so_messages_stay_readable() -> None:
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert redact("abc abc") == "abc abc"


def test_the_registry_is_bounded_and_keeps_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MAX_SECRETS", 3)
    for i in range(5):
        register_secret(f"token-number-{i}")
    assert redact("token-number-0") == "token-number-0", "the oldest was dropped"
    assert redact("token-number-4") == REDACTED


def test_conditions_are_redacted_where_they_are_built() -> None:
    register_secret(MARKER)
    leaking = Verdict("Unknown", "HubUnavailable", f"Invalid header value b'Bearer {MARKER}\\n'")
    status = build_status(
        SpeculativeDeploymentStatus(), Findings(1, leaking, Verdict("True", "Ok", "")), now=T0
    )
    dumped = json.dumps(status.model_dump(mode="json"))
    assert MARKER not in dumped and REDACTED in dumped
    failed = failed_status(
        status, Verdict("False", "ReconcileError", f"boom {MARKER}"), generation=2, now=T0
    )
    assert MARKER not in json.dumps(failed.model_dump(mode="json"))


class RecordingKube:
    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []

    async def create(self, kind: object, namespace: object, body: dict[str, object]) -> None:
        self.bodies.append(body)


def test_event_messages_are_redacted_before_they_are_posted() -> None:
    register_secret(MARKER)
    kube = RecordingKube()
    recorder = EventRecorder(kube, instance="t")  # type: ignore[arg-type]
    owner = {"metadata": {"name": "x", "namespace": "ns", "uid": "u"}}
    assert asyncio.run(recorder.emit(owner, "Warning", "HubUnavailable", f"token {MARKER}"))
    assert kube.bodies and MARKER not in json.dumps(kube.bodies)


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(
        "kubernetes.client.rest", logging.DEBUG, __file__, 1, message, args, info
    )


def test_the_log_filter_redacts_message_arguments_and_tracebacks() -> None:
    register_secret(MARKER)
    try:
        raise ValueError(f"Invalid header value {MARKER}")
    except ValueError as exc:
        record = _record("response body: %s", {"data": {"HF_TOKEN": MARKER}}, exc=exc)
    assert RedactingFilter().filter(record)
    for formatter in (JsonFormatter(), logging.Formatter("%(message)s")):
        line = formatter.format(record)
        assert MARKER not in line and REDACTED in line
        assert "ValueError" in line, "the traceback is kept, only the secret goes"


def test_specops_run_logging_filters_every_record_and_never_logs_bodies() -> None:
    """``--log-level DEBUG``: the kubernetes client's body logger stays at INFO, and
    whatever a library logs through the root handler is redacted."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {
        n: logging.getLogger(n).level
        for n in ("kubernetes", "kubernetes.client.rest", "urllib3", "kopf")
    }
    try:
        register_secret(MARKER)
        configure_logging(load_settings(log_level="DEBUG", log_format="json", hub_token=MARKER))
        stream = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        rest = logging.getLogger("kubernetes.client.rest")
        assert not rest.isEnabledFor(logging.DEBUG), "would log whole response bodies"
        assert not logging.getLogger("urllib3").isEnabledFor(logging.DEBUG)
        rest.debug("response body: %s", base64.b64encode(MARKER.encode()).decode())
        logging.getLogger("specops.anything").debug("token is %s", MARKER)
        logging.getLogger("huggingface_hub").warning("url ?token=%s", quote(MARKER, safe=""))
        out = stream.getvalue()
        assert "response body" not in out
        assert out.count(REDACTED) == 2 and MARKER not in out
    finally:
        root.handlers[:], root.level = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
