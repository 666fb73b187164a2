"""The operator's settings: environment, flags over environment, clear errors."""

from __future__ import annotations

import pytest

from specops.settings import OperatorSettings, SettingsError, load_settings


def test_defaults_watch_every_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SPECOPS_NAMESPACES", "SPECOPS_HUB_MIRROR", "SPECOPS_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.clusterwide and settings.namespaces == []
    assert settings.hub_mirror is None and settings.leader_election


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECOPS_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("SPECOPS_HUB_MIRROR", "/mirror")
    monkeypatch.setenv("SPECOPS_LOG_FORMAT", "json")
    settings = load_settings()
    assert settings.namespaces == ["team-a", "team-b"] and not settings.clusterwide
    assert str(settings.hub_mirror) == "/mirror" and settings.log_format == "json"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECOPS_METRICS_PORT", "9000")
    assert load_settings(metrics_port=9100).metrics_port == 9100
    assert load_settings(metrics_port=None).metrics_port == 9000


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("SPECOPS_METRICS_PORT", "eighty", "SPECOPS_METRICS_PORT"),
        ("SPECOPS_LOG_FORMAT", "xml", "SPECOPS_LOG_FORMAT"),
        ("SPECOPS_NAMESPACES", "Not_A_Namespace", "not a namespace"),
        ("SPECOPS_LEASE_RENEW_SECONDS", "60", "shorter than lease_duration_seconds"),
    ],
)
def test_bad_values_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=fragment) as info:
        load_settings()
    assert "\n" not in str(info.value)


def test_every_setting_is_documented() -> None:
    for name, field in OperatorSettings.model_fields.items():
        assert field.description, f"{name} has no description"


def test_specops_run_rejects_bad_settings_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    from specops.cli import main

    monkeypatch.setenv("SPECOPS_METRICS_PORT", "eighty")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "SPECOPS_METRICS_PORT" in err and "Traceback" not in err
    monkeypatch.delenv("SPECOPS_METRICS_PORT")
    assert main(["run", "--hub-mirror", "/nonexistent/mirror"]) == 2
    assert "is not a directory" in capsys.readouterr().err
