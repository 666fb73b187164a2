"""Reports: JSON is the truth, Markdown and plots are views of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.cli import main
from specops.load import report
from specops.load.progress import Progress
from specops.load.schedule import Profile
from specops.load.stats import RequestRecord, summarise
from specops.load.sweep import SweepError, sweep


def fake_records(n: int, gap: float) -> list[RequestRecord]:
    return [
        RequestRecord(
            start=i * gap,
            end=(i + 1) * gap,
            chunk_times=[i * gap + gap / 10, (i + 1) * gap],
            output_tokens=8,
            prompt_tokens=4,
        )
        for i in range(n)
    ]


def test_report_files_hold_the_numbers(tmp_path: Path) -> None:
    results = [
        (Profile("synchronous", "concurrency", 1), summarise(fake_records(4, 0.5))),
        (Profile("rate-3", "rate", 3.0), summarise(fake_records(6, 0.25))),
    ]
    doc = report.build({"target": {"url": "http://127.0.0.1:1", "model": "m"}}, results)
    written = report.write(doc, tmp_path)
    assert sorted(p.name for p in written) == [
        "latency_vs_rate.png",
        "report.json",
        "report.md",
        "throughput_vs_rate.png",
    ]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["totals"] == {
        "completed": 10,
        "errored": 0,
        "output_tokens": 80,
        "prompt_tokens": 40,
    }
    assert saved["profiles"][1]["target_rate"] == 3.0
    assert saved["profiles"][0]["ttft_ms"]["p50"] == pytest.approx(50.0)
    md = (tmp_path / "report.md").read_text()
    assert "| rate-3 | 3/s |" in md
    for png in ("latency_vs_rate.png", "throughput_vs_rate.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_runs_ends_then_points_between_their_rates() -> None:
    seen: list[tuple[str, float, int]] = []

    def run(profile: Profile, index: int) -> list[RequestRecord]:
        seen.append((profile.name, profile.value, index))
        # Synchronous completes 2 req/s, throughput 10 req/s.
        return fake_records(10, 0.5 if profile.name == "synchronous" else 0.1)

    results = sweep(run, throughput_concurrency=16, points=3, progress=None)
    assert [s[0] for s in seen] == ["synchronous", "throughput", "rate-4", "rate-6", "rate-8"]
    assert [s[2] for s in seen] == [1, 2, 3, 4, 5]
    assert seen[1][1] == 16
    assert len(results) == 5


def test_sweep_against_a_dead_endpoint_stops_after_the_first_profile() -> None:
    ran: list[str] = []

    def run(profile: Profile, index: int) -> list[RequestRecord]:
        ran.append(profile.name)
        return [RequestRecord(start=0.0, error="ClientConnectorError: refused")] * 2

    with pytest.raises(SweepError, match=r"cannot sweep: ClientConnectorError: refused$"):
        sweep(run, throughput_concurrency=4)
    assert ran == ["synchronous"]


def test_progress_prints_one_line_per_profile_when_piped(tmp_path: Path) -> None:
    out = (tmp_path / "log").open("w+")
    progress = Progress(2, stream=out)
    progress.update(1, "concurrency 1", 3, 10, 1.0)
    progress.finish(1, "concurrency 1", "2.00 req/s")
    out.seek(0)
    assert out.read().strip() == "[profile 1/2] concurrency 1      2.00 req/s"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://10.0.0.1:8000", "--model", "m", "--output", "o"], "loopback"),
        (["--model", "m", "--output", "o"], "--url is required"),
        (["--url", "http://127.0.0.1:9", "--model", "m"], "--output"),
        (
            ["--url", "http://127.0.0.1:9", "--model", "m", "--output", "o", "--prompts", "/nope"],
            "cannot read",
        ),
    ],
)
def test_sweep_usage_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["load", "sweep", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
