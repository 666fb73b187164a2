"""specops.boundedio: capped reads that never block, bounded JSON that never escapes."""

from __future__ import annotations

import json
import os
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specops.boundedio import (
    InvalidJson,
    NotARegularFile,
    TooLarge,
    join_capped,
    parse_json_bounded,
    read_capped,
)

MiB = 1024 * 1024


def finishes(call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a daemon thread; return what it raised. Fails if it never returns.

    The join timeout is a guard against hanging the suite on a regression (a
    blocking open of a FIFO), not a measurement.
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert outcome, "the call blocked"
    return outcome[0]


# --------------------------------------------------------------------------- read_capped


def test_reads_a_regular_file_up_to_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_capped(path, 100) == b"x" * 100
    with pytest.raises(TooLarge) as err:
        read_capped(path, 99)
    assert (err.value.size, err.value.limit) == (100, 99)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    raised = finishes(lambda: read_capped(fifo, MiB))
    assert isinstance(raised, NotARegularFile)
    assert raised.kind == "FIFO"


def test_a_character_device_is_refused() -> None:
    with pytest.raises(NotARegularFile, match="character device"):
        read_capped("/dev/zero", MiB)


def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "config.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(NotARegularFile, match="character device"):
        read_capped(link, MiB)


def test_a_directory_and_a_socket_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotARegularFile, match="directory"):
        read_capped(tmp_path, MiB)
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(NotARegularFile, match="socket"):
            read_capped(path, MiB)
    finally:
        server.close()


def test_no_follow_refuses_a_symlink_but_reads_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"{}")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_capped(link, 10) == b"{}"
    with pytest.raises(NotARegularFile, match="symbolic link"):
        read_capped(link, 10, follow_symlinks=False)
    assert read_capped(target, 10, follow_symlinks=False) == b"{}"


def test_a_huge_file_is_refused_without_being_read(tmp_path: Path) -> None:
    big = tmp_path / "config.json"
    with big.open("wb") as handle:
        handle.truncate(1024 * MiB)  # sparse: 1 GiB that costs no disk
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            read_capped(big, 4 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MiB


def test_missing_files_are_oserrors_for_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_capped(tmp_path / "nope", 10)


def test_a_stream_is_joined_up_to_the_cap_and_no_further() -> None:
    pulled: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            pulled.append(1)
            yield b"x" * 1000

    with pytest.raises(TooLarge, match="the body is more than the 10000 bytes"):
        join_capped(endless(), 10_000, what="the body")
    assert len(pulled) == 11
    assert join_capped(iter([b"ab", b"", b"c"]), 3) == b"abc"


# --------------------------------------------------------------------------- JSON


def test_an_ordinary_config_parses() -> None:
    config = {"hidden_size": 4096, "rope_scaling": {"factor": 8.0}, "eos": [1, 2]}
    assert parse_json_bounded(json.dumps(config).encode()) == config


@pytest.mark.parametrize("depth", [65, 2_000, 150_000])
def test_deep_nesting_is_invalid_json(depth: int) -> None:
    """65 is over the limit, 2,000 past Python's recursion limit, 150,000 far past it."""
    with pytest.raises(InvalidJson, match="deeper than 64"):
        parse_json_bounded("[" * depth + "]" * depth)
    with pytest.raises(InvalidJson, match="deeper than 64"):
        parse_json_bounded('{"a":' * depth + "1" + "}" * depth)


def test_deep_nesting_in_a_worker_thread_is_invalid_json() -> None:
    """The operator parses in asyncio.to_thread workers, whose stacks are their own."""
    raised = finishes(lambda: parse_json_bounded("[" * 150_000 + "]" * 150_000))
    assert isinstance(raised, InvalidJson)


def test_nesting_at_the_limit_is_fine() -> None:
    assert parse_json_bounded("[" * 64 + "]" * 64) is not None


@pytest.mark.parametrize("digits", [101, 4_300, 5_000, 1_000_000])
def test_huge_integers_are_invalid_json(digits: int) -> None:
    for text in ("7" * digits, "-" + "7" * digits, '{"n": ' + "1" * digits + "}"):
        with pytest.raises(InvalidJson, match="more than 100 digits"):
            parse_json_bounded(text)


def test_integers_within_the_limit_and_long_floats_parse() -> None:
    assert parse_json_bounded("9" * 100) == int("9" * 100)
    assert parse_json_bounded("-1") == -1
    assert parse_json_bounded("1" + "0" * 5000 + ".5") == float("inf")


def test_too_many_values_are_refused_before_parsing() -> None:
    with pytest.raises(InvalidJson, match="more than 200000 JSON values"):
        parse_json_bounded("[" + "{}," * 200_000 + "{}]")
    assert len(parse_json_bounded("[" + "0," * 1000 + "0]")) == 1001


def test_messages_name_the_problem_never_the_content() -> None:
    secret = "hf_TOPSECRETTOKENVALUE"
    for text in (f'{{"a": {secret}}}', f"\xff{secret}".encode("latin-1"), f'["{secret}"'):
        with pytest.raises(InvalidJson) as err:
            parse_json_bounded(text)
        assert secret not in str(err.value)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_parse_or_raise_invalid_json(data: bytes) -> None:
    try:
        parse_json_bounded(data)
    except InvalidJson as exc:
        assert str(exc)
