"""Settings: flags over environment over [tool.prodloop] over defaults; secrets stay masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodloop.server.errors import ConfigError
from prodloop.server.settings import load_settings


def _pyproject(repo: Path, body: str) -> None:
    repo.mkdir(exist_ok=True)
    (repo / "pyproject.toml").write_text(body)


def test_precedence_is_flags_then_env_then_pyproject_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pyproject(tmp_path, "[tool.prodloop]\nport = 9001\nmax-string-chars = 300\nsensitive_fields = ['x_id']\n")
    monkeypatch.setenv("PRODLOOP_PORT", "9002")
    s = load_settings(repo=tmp_path)
    assert (s.port, s.max_string_chars, s.sensitive_fields) == (9002, 300, ["x_id"])
    assert load_settings(repo=tmp_path, port=9003).port == 9003
    monkeypatch.delenv("PRODLOOP_PORT")
    assert load_settings(repo=tmp_path).port == 9001
    assert load_settings(repo=tmp_path / "nowhere").port == 8765


def test_data_dir_and_database_default_inside_the_repo(tmp_path: Path) -> None:
    s = load_settings(repo=tmp_path)
    assert s.database_path == (tmp_path / ".prodloop" / "prodloop.db").resolve()
    assert load_settings(repo=tmp_path, database_url=f"sqlite:///{tmp_path}/x.db").database_path == tmp_path / "x.db"


def test_unsupported_database_url_says_what_works(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="use sqlite:///PATH or postgresql://"):
        _ = load_settings(repo=tmp_path, database_url="mysql://u:pw@db/x").database
    assert load_settings(repo=tmp_path, database_url="postgresql://u:pw@db/x").database == "postgresql://u:pw@db/x"
    with pytest.raises(ConfigError, match="needs a SQLite store"):
        _ = load_settings(repo=tmp_path, database_url="postgresql://u:pw@db/x").database_path


def test_broken_pyproject_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    _pyproject(tmp_path, "[tool.prodloop\nport = ")
    with pytest.raises(ConfigError, match=r"pyproject\.toml is not valid TOML"):
        load_settings(repo=tmp_path)


def test_tokens_are_masked_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODLOOP_SENTRY_TOKEN", "sntrys_secret_value_123")
    s = load_settings(repo=tmp_path, mcp_token="bearer-secret-456")
    assert "sntrys_secret_value_123" not in repr(s)
    assert "bearer-secret-456" not in repr(s)
    assert s.sentry_token is not None
    assert s.sentry_token.get_secret_value() == "sntrys_secret_value_123"


@pytest.mark.parametrize(
    "line",
    [
        'github_base_url = "http://evil.example"', 'github_token = "x"', 'data_dir = "/tmp/elsewhere"',
        'database_url = "sqlite:////tmp/x.db"', 'git_remote = "evil"', 'service_python = "/bin/sh"',
        'host = "0.0.0.0"', "scrub_emails = false", "ingest_rate_limit = 0",
        "[tool.prodloop.gates]\nrequire_isolation = false", "[tool.prodloop.gates]\nisolate-network = false",
        "[tool.prodloop.gates]\nrun_non_hermetic = true", "[tool.prodloop.gates]\nmin_mutation_score = 0.1",
        "[tool.prodloop.gates]\nflaky_runs = 1", "[tool.prodloop.budgets]\nmax_runs = 1000",
        "[tool.prodloop.gates]\ntimeout_seconds = 3600", "[tool.prodloop.triage]\nmode = \"autonomous\"",
        "[tool.prodloop.triage]\nmin_events = 2", "[tool.prodloop.triage]\ndeploy_window_hours = 100",
        "[tool.prodloop.triage]\ntenant_tag = \"none\"", "[tool.prodloop.triage]\nbaseline_days = 3",
        "[tool.prodloop.retention]\nevent_days = 1", "[tool.prodloop.reliability]\ntier2_users = 1000",
        "[tool.prodloop]\nsentry_client_secret = \"x\"",
    ],
)  # fmt: skip
def test_a_repository_can_only_tighten_never_loosen_or_redirect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    body = line if line.startswith("[") else f"[tool.prodloop]\n{line}"
    _pyproject(tmp_path, body)
    key = line.split("]\n")[-1].split(" =")[0].replace("-", "_")
    with pytest.raises(ConfigError, match=rf"{key} in .*pyproject\.toml: .*(may not set it|may only).*PRODLOOP_"):
        load_settings(repo=tmp_path)


def test_what_a_repository_may_set_still_applies_and_flags_or_env_still_loosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pyproject(
        tmp_path,
        "[tool.prodloop]\nport = 9009\npath_rewrites = {'/app/' = ''}\nscrub_emails = true\n"
        "[tool.prodloop.gates]\nflaky_runs = 8\ntimeout_seconds = 30\nmin_mutation_score = 0.9\n"
        "[tool.prodloop.budgets]\nmax_runs = 3\n"
        "[tool.prodloop.triage]\nmin_events = 50\ndeploy_window_hours = 6\nweight_trend = 2.0\n"
        "[tool.prodloop.reliability]\ntier2_users = 5\n",
    )
    s = load_settings(repo=tmp_path)
    assert (s.triage.min_events, s.triage.deploy_window_hours, s.triage.weight_trend) == (50, 6, 2.0)
    assert s.reliability.tier2_users == 5  # stricter: more code counts as tier 2
    assert (s.port, s.path_rewrites, s.gates.flaky_runs, s.gates.timeout_seconds) == (9009, {"/app/": ""}, 8, 30)
    assert (s.gates.min_mutation_score, s.budgets.max_runs) == (0.9, 3)
    monkeypatch.setenv("PRODLOOP_GITHUB_BASE_URL", "https://ghe.example/api/v3")
    monkeypatch.setenv("PRODLOOP_GATES__REQUIRE_ISOLATION", "false")
    s = load_settings(repo=tmp_path)
    assert s.github_base_url == "https://ghe.example/api/v3" and s.gates.require_isolation is False


def test_every_setting_is_classified_for_what_a_repository_may_do() -> None:
    from pydantic import BaseModel

    from prodloop.server.settings import REPO_POLICY, Settings

    fields = set()
    for name, field in Settings.model_fields.items():  # a table of settings counts by each of its fields
        table = field.annotation
        if isinstance(table, type) and issubclass(table, BaseModel):
            fields |= {f"{name}.{sub}" for sub in table.model_fields}
        else:
            fields.add(name)
    assert {"gates.flaky_runs", "budgets.max_runs", "reliability.tier2_users"} <= fields
    assert set(REPO_POLICY) == fields
    assert set(REPO_POLICY.values()) <= {"free", "never", "max", "min", "on", "off"}


def test_nested_settings_come_from_the_environment_with_a_double_underscore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODLOOP_GATES__SHUFFLE_WITH_MODULE", "false")
    monkeypatch.setenv("PRODLOOP_BUDGETS__MAX_SYNTHESIS_ATTEMPTS", "7")
    settings = load_settings(repo=tmp_path)
    assert settings.gates.shuffle_with_module is False
    assert settings.budgets.max_synthesis_attempts == 7


def test_a_relative_repo_is_made_absolute_and_the_ledger_follows_the_repos_test_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "svc" / "test").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(repo=Path("svc"))
    assert settings.repo == tmp_path / "svc"
    assert settings.ledger_path == "test/.prodloop/provenance.jsonl"
    (tmp_path / "svc" / "tests").mkdir()
    assert load_settings(repo=Path("svc")).ledger_path == "tests/.prodloop/provenance.jsonl"
    assert load_settings(repo=Path("svc"), provenance_path="qa/ledger.jsonl").ledger_path == "qa/ledger.jsonl"
