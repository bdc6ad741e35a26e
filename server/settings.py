"""The one settings object, built at the entry point and passed down.

Precedence, highest first: keyword arguments (the CLI's flags), `PRODLOOP_*` environment
variables, the `[tool.prodloop]` table of the target repository's `pyproject.toml`, defaults.
Secrets are `SecretStr`: their repr is masked and they are never returned to an agent.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from prodloop.server.errors import ConfigError

MiB = 1024 * 1024


# What the served repository's `[tool.prodloop]` may set. The checked-out branch may come from a stranger, so
# it may only tighten: "free" settings change nothing about containment or where data goes; "max" / "min" may
# only lower / raise a limit against its default; "on" / "off" may only set a switch its safe way. "never":
# it weakens containment or redirects data or tokens (flags and PRODLOOP_* variables only). A test classifies
# every field, so a new one cannot slip through unclassified.
REPO_POLICY: dict[str, str] = {
    "repo": "never", "data_dir": "never", "database_url": "never", "host": "never", "port": "free",
    "allowed_hosts": "never", "body_timeout_seconds": "max",
    "mcp_token": "never", "public_url": "never",
    "max_event_bytes": "max", "max_envelope_bytes": "max", "ingest_rate_limit": "never", "ingest_rate_burst": "never",
    "ingest_workers": "never", "ingest_keep_every_payload": "never", "ingest_kept_per_release": "never",
    "ingest_kept_inputs": "never",
    "sensitive_fields": "free", "scrub_emails": "on", "scrub_ip_addresses": "on", "max_string_chars": "max",
    "path_rewrites": "free", "service_python": "never",
    "gates.flaky_runs": "min", "gates.shuffle_with_module": "on", "gates.max_test_seconds": "max",
    "gates.timeout_seconds": "max", "gates.memory_mb": "max", "gates.min_mutation_score": "min",
    "gates.isolate_network": "on", "gates.require_isolation": "on", "gates.run_non_hermetic": "off",
    "budgets.max_runs": "max", "budgets.max_synthesis_attempts": "max", "budgets.max_cpu_seconds": "max",
    "budgets.max_prs_per_issue": "max", "budgets.max_prs_per_day": "max", "budgets.max_agent_tokens": "max",
    "budgets.max_cost_usd": "max", "budgets.max_no_effect_iterations": "max",
    "post_merge.confidence": "min", "post_merge.baseline_hours": "free", "post_merge.fixed_share": "max",
    "post_merge.no_effect_share": "max", "post_merge.max_watch_hours": "max", "post_merge.environment": "never",
    "post_merge.interval_seconds": "max", "post_merge.notify_authors": "off",
    "andon.max_p_value": "min", "andon.min_ratio": "max", "andon.min_events": "max", "andon.min_users": "max",
    "andon.window_hours": "min",
    "andon.baseline_hours": "free", "andon.propose_revert": "on",
    "auto_merge.min_mutation_score": "min", "auto_merge.max_fix_lines": "max", "auto_merge.max_fix_files": "max",
    "auto_merge.label": "free",
    # Quarantine hides a test's failures: a repository may only make it harder to enter (raise the rate and the
    # commits) and quicker to leave (lower the clean runs); the marker's name is a label.
    "suite.slow_marker": "free", "suite.quarantine_min_rate": "min", "suite.quarantine_min_commits": "min",
    "suite.lift_after_clean_runs": "max",
    "base_branch": "never", "git_remote": "never", "github_token": "never", "github_repo": "never",
    "github_base_url": "never", "pr_labels": "free", "provenance_path": "never",
    "sentry_base_url": "never", "sentry_org": "never", "sentry_project": "never", "sentry_token": "never",
    "sentry_client_secret": "never", "github_webhook_secret": "never",
    "reliability.tier2_failure_share": "max", "reliability.tier2_users": "max",
    "reliability.tier2_importers": "max", "reliability.change_failure_hours": "free",
    "retention.hourly_days": "never", "retention.aggregate_days": "never", "retention.event_days": "never",
    "triage.mode": "never", "triage.baseline_days": "never", "triage.min_events": "min", "triage.max_p_value": "max",
    "triage.min_users": "min", "triage.min_duration_hours": "min", "triage.deploy_window_hours": "max",
    "triage.max_actionable_per_day": "max", "triage.interval_seconds": "max",
    "triage.tenant_tag": "never", "triage.weight_breadth": "free",
    "triage.weight_depth": "free", "triage.weight_duration": "free", "triage.weight_trend": "free",
}  # fmt: skip


def _check_from_repo(key: str, value: Any, default: Any, path: Path) -> None:
    """Refuse a repository setting that would loosen what prodloop enforces (see REPO_POLICY)."""
    rule = REPO_POLICY.get(key, "never")
    env = "PRODLOOP_" + key.upper().replace(".", "__")
    if rule == "free":
        return
    if rule == "never":
        problem = "weakens containment or redirects data, so a repository may not set it"
    elif rule in ("on", "off"):
        if value is (rule == "on"):
            return
        problem = f"a repository may only set it to {'true' if rule == 'on' else 'false'}"
    else:
        try:
            tighter = float(value) <= float(default) if rule == "max" else float(value) >= float(default)
        except (TypeError, ValueError):
            return  # not a number: the model's own validation names the problem
        if tighter:
            return
        problem = f"a repository may only {'lower' if rule == 'max' else 'raise'} it from {default}"
    raise ConfigError(f"{key} in {path}", problem, f"remove it there; pass it as a flag or {env}")


_NESTED = (
    "gates",
    "budgets",
    "reliability",
    "retention",
    "triage",
    "post_merge",
    "andon",
    "auto_merge",
    "suite",
)  # tables whose keys are each classified


class _RepoPyprojectSource(PydanticBaseSettingsSource):
    """`[tool.prodloop]` from the pyproject.toml of the repository being served."""

    def __init__(self, settings_cls: type[BaseSettings], repo: Path) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        path = self._path = repo / "pyproject.toml"
        if path.is_file():
            try:
                table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("prodloop", {})
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError("[tool.prodloop]", f"{path} is not valid TOML ({exc})", "fix the file") from exc
            if not isinstance(table, dict):
                raise ConfigError("[tool.prodloop]", f"in {path} it is not a table", "make it a TOML table")
            self._data = {k.replace("-", "_"): v for k, v in table.items()}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        out: dict[str, Any] = {}
        for key, value in self._data.items():
            if key not in fields:
                continue
            nested = fields[key].default_factory if isinstance(value, dict) and key in _NESTED else None
            if nested is not None:
                defaults = nested()  # type: ignore[call-arg]
                for sub, sub_value in value.items():
                    name = sub.replace("-", "_")
                    _check_from_repo(f"{key}.{name}", sub_value, getattr(defaults, name, None), self._path)
                out[key] = {sub.replace("-", "_"): v for sub, v in value.items()}
            else:
                _check_from_repo(key, value, fields[key].default, self._path)
                out[key] = value
        return out


class GateSettings(BaseModel):
    """`[tool.prodloop.gates]`: what a candidate regression test must show."""

    model_config = ConfigDict(extra="forbid")

    flaky_runs: int = Field(default=5, ge=1, le=50, description="extra passing runs with the fix")
    shuffle_with_module: bool = True
    max_test_seconds: float = Field(default=5.0, gt=0, description="the 'fast' gate")
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600, description="wall clock per pytest run")
    memory_mb: int = Field(default=2048, ge=64, description="address-space limit per pytest run")
    min_mutation_score: float = Field(default=0.8, ge=0, le=1)
    isolate_network: bool = Field(default=True, description="runs see only their own loopback interface")
    require_isolation: bool = Field(
        default=True,
        description="no passing receipt unless the runs had the checkout read-only and secrets hidden "
        "(set false where the kernel forbids unprivileged user namespaces)",
    )
    run_non_hermetic: bool = Field(
        default=False,
        description="run a test the hermetic gate refused anyway, inside the sandbox (its receipt still fails); "
        "only to test the sandbox itself",
    )


class ReliabilitySettings(BaseModel):
    """`[tool.prodloop.reliability]`: when a part of the code counts as Tier 2 (look harder), and how long after a
    deploy a new issue in the changed code counts as that change's failure. Labels only: a repository may set them."""

    model_config = ConfigDict(extra="forbid")

    tier2_failure_share: float = Field(default=0.25, gt=0, le=1, description="share of the window's error events")
    tier2_users: int = Field(default=25, ge=1, description="distinct users its issues reached in the window")
    tier2_importers: int = Field(default=10, ge=1, description="modules of the repository that import it")
    change_failure_hours: float = Field(default=72.0, gt=0, le=24 * 30)


class TriageSettings(BaseModel):
    """`[tool.prodloop.triage]`: when a production signal is worth an agent's work. `mode`: `shadow` (record what
    would be done; agent work refused), `approve` (a person approves each issue first), `autonomous` (actionable
    issues proceed), `off` (triage does not gate: development and benches of the other stages; never from a
    repository). An issue not triaged yet is triaged when work on it is asked for."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["shadow", "approve", "autonomous", "off"] = "approve"
    baseline_days: int = Field(default=14, ge=1, le=90, description="the hourly series triage reads")
    min_events: int = Field(default=10, ge=1, description="events after onset before a change can be significant")
    max_p_value: float = Field(default=0.01, gt=0, lt=1, description="after correcting for every onset tried")
    min_users: int = Field(default=2, ge=1, description="distinct users after onset before actionable")
    min_duration_hours: float = Field(default=1.0, ge=0)
    deploy_window_hours: float = Field(
        default=24.0, gt=0, le=168, description="an onset this soon after a deploy is its"
    )
    max_actionable_per_day: int = Field(default=10, ge=1)
    interval_seconds: float = Field(
        default=300.0,
        ge=1,
        le=86_400,
        description="serve --http triages in the background this often, when events arrived",
    )
    tenant_tag: str = Field(default="tenant", max_length=100, description="the event tag naming a customer/tenant")
    weight_breadth: float = Field(default=1.0, ge=0)
    weight_depth: float = Field(default=1.0, ge=0)
    weight_duration: float = Field(default=1.0, ge=0)
    weight_trend: float = Field(default=1.0, ge=0)


class RetentionSettings(BaseModel):
    """`[tool.prodloop.retention]`: how long the store keeps what it knows, so it stays bounded. Hourly counts
    (issues, sessions, transactions) fold into days after `hourly_days`; day counts go after `aggregate_days`;
    raw events (their payloads) go after `event_days`, all but each issue's newest one. Deleting data is the
    operator's call: a repository may not set these."""

    model_config = ConfigDict(extra="forbid")

    hourly_days: int = Field(default=14, ge=1, le=366, description="hour rows kept this long, then days only")
    aggregate_days: int = Field(default=400, ge=1, description="day counts kept this long (windows up to 365 days)")
    event_days: int = Field(default=90, ge=1, description="raw events kept this long (each issue's newest kept)")


class BudgetSettings(BaseModel):
    """`[tool.prodloop.budgets]`: per issue lineage, before a person must look."""

    model_config = ConfigDict(extra="forbid")

    max_runs: int = Field(default=10, ge=1, description="candidate runs (run_candidate_test) per issue")
    max_synthesis_attempts: int = Field(
        default=20, ge=1, description="frames synthesize_regression_test may try on the deployed code per issue"
    )
    max_cpu_seconds: float = Field(default=600.0, gt=0)
    max_prs_per_issue: int = Field(default=3, ge=1)
    max_prs_per_day: int = Field(default=10, ge=1, description="per repository")
    max_agent_tokens: int = Field(default=5_000_000, ge=1, description="tokens agents report spending per issue")
    max_cost_usd: float = Field(default=50.0, gt=0, description="money agents report spending per issue")
    max_no_effect_iterations: int = Field(
        default=2, ge=1, description="consecutive deployed fixes with no effect before the lineage halts"
    )


class PostMergeSettings(BaseModel):
    """`[tool.prodloop.post_merge]`: when a deployed fix counts as working. The issue's rate after the deploy is
    compared with the pre-deploy trend projected over the same exposure (sessions, else transactions, else hours):
    `fixed` when, with `confidence`, it is under `fixed_share` of the projection; `no_effect` when, with the same
    confidence, it is at least `no_effect_share` of it, or `max_watch_hours` passed without `fixed`."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(default=0.99, gt=0.5, lt=1)
    baseline_hours: int = Field(default=72, ge=6, le=24 * 30, description="the pre-deploy window the trend is fit on")
    fixed_share: float = Field(default=0.25, gt=0, lt=1, description="the rate must fall under this share of the trend")
    no_effect_share: float = Field(default=0.5, gt=0, lt=1)
    max_watch_hours: float = Field(
        default=168.0, gt=0, le=24 * 13, description="past this without 'fixed': no_effect (inside hourly retention)"
    )
    environment: str | None = Field(default=None, max_length=200, description="deploys judged; default every one")
    interval_seconds: float = Field(
        default=300.0, ge=5, le=3600, description="the background watch pass in serve --http"
    )
    notify_authors: bool = Field(default=False, description="comment on the PR that introduced an attributed error")


class AndonSettings(BaseModel):
    """`[tool.prodloop.andon]`: when a deploy made things worse. Lower and faster than a fix's bar (asymmetric risk):
    a few events at `min_ratio` times the pre-deploy rate, significant at `max_p_value` after correcting for every
    issue tested, within `window_hours` of the deploy."""

    model_config = ConfigDict(extra="forbid")

    max_p_value: float = Field(default=1e-4, gt=0, lt=1)
    min_ratio: float = Field(default=2.0, ge=1)
    min_events: int = Field(default=5, ge=1)
    min_users: int = Field(default=2, ge=1, description="distinct users (or sessions) behind an issue's events")
    window_hours: float = Field(default=24.0, gt=0, le=24 * 14)
    baseline_hours: float = Field(default=24.0, ge=1, le=24 * 14)
    propose_revert: bool = Field(default=True, description="push a revert branch/PR when the cord is pulled")


class AutoMergeSettings(BaseModel):
    """When a prodloop PR is labelled eligible for auto-merge: every gate passed (always so for a PR), a mutation
    score at least this (stricter than the gates'), and a small change: a test plus a fix of few lines and files."""

    model_config = ConfigDict(extra="forbid")

    min_mutation_score: float = Field(default=0.95, ge=0, le=1)
    max_fix_lines: int = Field(default=20, ge=0, le=1000, description="lines the fix adds or removes")
    max_fix_files: int = Field(default=2, ge=0, le=50, description="files the fix changes (besides the test)")
    label: str = Field(default="prodloop:auto-merge-eligible", min_length=1, max_length=50)


class SuiteSettings(BaseModel):
    """`[tool.prodloop.suite]`: how the test suite follows production. Accepted proposals move quiet tests behind
    `slow_marker` (`pytest -m "not <marker>"` deselects them); a test flaky on at least `quarantine_min_rate` of at
    least `quarantine_min_commits` commits CI ran it on is quarantined (xfail, not strict), and lifted after
    `lift_after_clean_runs` clean CI runs in a row."""

    model_config = ConfigDict(extra="forbid")

    slow_marker: str = Field(default="slow_suite", max_length=60, description="the marker of the slower suite")
    quarantine_min_rate: float = Field(default=0.1, gt=0, le=1, description="flaky commits over commits run")
    quarantine_min_commits: int = Field(default=3, ge=1, description="commits CI ran the test on")
    lift_after_clean_runs: int = Field(default=10, ge=1, le=1000, description="passed, no reruns, in a row")

    @field_validator("slow_marker")
    @classmethod
    def _identifier(cls, value: str) -> str:
        import keyword

        if not value.isidentifier() or keyword.iskeyword(value) or not value.isascii():
            raise ValueError(f"{value[:60]!r} is not a Python identifier, so pytest.mark cannot name it")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRODLOOP_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    repo: Path = Field(default=Path("."), description="git repository of the service under repair")
    data_dir: Path | None = Field(default=None, description="where the store and tokens live; default <repo>/.prodloop")
    database_url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB; default <data_dir>/prodloop.db",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host headers the HTTP server answers (name or name:port) when bound beyond loopback (required)",
    )
    body_timeout_seconds: float = Field(default=30.0, gt=0, description="an ingest body silent this long gets 408")
    mcp_token: SecretStr | None = Field(default=None, description="bearer token for HTTP MCP; generated if unset")
    public_url: str | None = Field(default=None, description="URL senders reach prodloop at (for printed DSNs)")

    max_event_bytes: int = Field(default=1 * MiB, ge=1024)
    max_envelope_bytes: int = Field(default=20 * MiB, ge=1024)
    ingest_rate_limit: float = Field(
        default=5000.0, ge=0, description="events/s per project; 0 disables (default above what one process stores)"
    )
    ingest_rate_burst: float = Field(default=10000.0, ge=1)
    ingest_workers: int = Field(
        default=1, ge=0, le=64, description="processes that scrub ingest events beside the event loop; 0: threads"
    )
    # Which events keep their (scrubbed) payload; the rest are counted without it and never scrubbed (see README).
    ingest_keep_every_payload: bool = Field(
        default=False, description="keep and scrub every event's payload (no event is only counted)"
    )
    ingest_kept_per_release: int = Field(
        default=5, ge=1, le=10_000, description="an issue's first events per release that keep their payload"
    )
    ingest_kept_inputs: int = Field(
        default=50, ge=0, le=10_000,
        description="distinct inputs (culprit frame locals) per issue whose first event keeps its payload",
    )  # fmt: skip

    sensitive_fields: list[str] = Field(default_factory=list, description="extra keys whose values are scrubbed")
    scrub_emails: bool = True
    scrub_ip_addresses: bool = True
    max_string_chars: int = Field(default=1024, ge=32, le=65536)

    path_rewrites: dict[str, str] = Field(
        default_factory=dict, description="frame path prefixes to rewrite before mapping, e.g. {'/app/': ''}"
    )

    service_python: Path | None = Field(
        default=None,
        description="the service's interpreter for test runs; default <repo>/.venv/bin/python or prodloop's",
    )
    gates: GateSettings = Field(default_factory=GateSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    auto_merge: AutoMergeSettings = Field(default_factory=AutoMergeSettings)
    reliability: ReliabilitySettings = Field(default_factory=ReliabilitySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    triage: TriageSettings = Field(default_factory=TriageSettings)
    post_merge: PostMergeSettings = Field(default_factory=PostMergeSettings)
    andon: AndonSettings = Field(default_factory=AndonSettings)
    suite: SuiteSettings = Field(default_factory=SuiteSettings)

    base_branch: str | None = Field(default=None, description="PR base; default the remote's default branch")
    git_remote: str = Field(default="origin", description="where PR branches are pushed")
    github_token: SecretStr | None = Field(default=None, description="without it, open_pr pushes a branch only")
    github_repo: str | None = Field(default=None, description="owner/name; default parsed from the remote URL")
    github_base_url: str = Field(default="https://api.github.com", description="GitHub Enterprise: https://HOST/api/v3")
    pr_labels: list[str] = Field(default_factory=lambda: ["prodloop", "regression-test"])
    provenance_path: str | None = Field(
        default=None,
        description="committed with each PR; default <test folder>/.prodloop/provenance.jsonl, where the test "
        "folder is the repository's own tests/ or test/",
    )

    sentry_base_url: str = "https://sentry.io"
    sentry_org: str | None = None
    sentry_project: str | None = None
    sentry_token: SecretStr | None = None
    sentry_client_secret: SecretStr | None = Field(
        default=None, description="verifies Sentry's webhooks at /hooks/sentry (Sentry-Hook-Signature); unset: refused"
    )
    github_webhook_secret: SecretStr | None = Field(
        default=None, description="verifies GitHub's webhooks at /hooks/github (X-Hub-Signature-256); unset: refused"
    )

    @field_validator("repo", mode="after")
    @classmethod
    def _absolute_repo(cls, value: Path) -> Path:
        # A relative --repo must mean the same folder to every child process (worktrees, sandboxes, git -C).
        return value.expanduser().resolve()

    @field_validator("data_dir", "service_python", mode="after")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(os.path.abspath(value.expanduser()))

    @field_validator("sensitive_fields", "pr_labels", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        repo: Any = None
        if isinstance(init_settings, InitSettingsSource):
            repo = init_settings.init_kwargs.get("repo")
        repo = repo or os.environ.get("PRODLOOP_REPO") or "."
        return (init_settings, env_settings, _RepoPyprojectSource(settings_cls, Path(repo)))

    @property
    def ledger_path(self) -> str:
        """Where provenance lines are committed: the setting, else beside the repository's own tests."""
        if self.provenance_path:
            return self.provenance_path
        folder = next((name for name in ("tests", "test") if (self.repo / name).is_dir()), "tests")
        return f"{folder}/.prodloop/provenance.jsonl"

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or self.repo / ".prodloop").resolve()

    @property
    def database(self) -> Path | str:
        """Where the store is: a SQLite file's path, or a PostgreSQL URL (it may hold a password: never show it;
        `prodloop.server.store.engine.redacted` gives what can be shown)."""
        url = self.database_url
        if url is None:
            return self.resolved_data_dir / "prodloop.db"
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///")).resolve()
        if url.startswith(("postgresql://", "postgres://")):
            return url
        raise ConfigError(
            "database_url",
            f"scheme of {url.split(':', 1)[0][:20]!s} is not supported",
            "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        )

    @property
    def database_path(self) -> Path:
        """The SQLite file (what needs one: a PostgreSQL store has none)."""
        database = self.database
        if isinstance(database, str):
            raise ConfigError("database_url", "this needs a SQLite store", "use sqlite:///PATH or leave it unset")
        return database


def service_python(settings: Settings) -> Path:
    if settings.service_python is not None:
        return settings.service_python
    for candidate in (settings.repo / ".venv" / "bin" / "python", settings.repo / "venv" / "bin" / "python"):
        if candidate.exists():
            return candidate
    return Path(sys.executable)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, dropping overrides left as None so lower sources still apply."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
