"""Process plumbing of ``specops run``: JSON logs, health answers."""

from __future__ import annotations

import json
import logging

from specops.controller.runner import JsonFormatter, Operator, configure_logging
from specops.settings import load_settings


def test_json_logs_are_one_object_per_line() -> None:
    record = logging.LogRecord("specops", logging.WARNING, __file__, 1, "hub %s", ("down",), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["message"] == "hub down"
    assert entry["logger"] == "specops"


def test_kopf_chatter_is_hidden_unless_debugging() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("kopf").level)
    try:
        _check_logging()
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("kopf").setLevel(saved[2])


def _check_logging() -> None:
    configure_logging(load_settings(log_format="json", log_level="INFO"))
    assert logging.getLogger("kopf").level == logging.WARNING
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
    configure_logging(load_settings(log_level="DEBUG"))
    assert logging.getLogger().level == logging.DEBUG


def test_followers_are_healthy_and_a_leader_once_kopf_runs() -> None:
    op = Operator(load_settings())
    assert op.healthy() == (True, "standby")
    op._on_leading(True)
    assert op.healthy() == (True, "starting")
    op.kopf_ready.set()
    assert op.healthy() == (True, "leader")
    assert op.metrics.leader._value.get() == 1
