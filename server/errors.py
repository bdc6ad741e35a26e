"""Every error prodloop raises on purpose, and what the caller should do about it.

    ProdloopError
    ├── ConfigError              settings or the data directory are unusable
    ├── StoreError               the SQLite store could not be opened, migrated or written
    ├── NotFoundError            an issue, event or project id that the store does not hold
    ├── InvalidArgument          a tool argument that is malformed (a bad cursor, neither id given)
    ├── IngestError              an ingest request was refused (carries its HTTP status)
    │   ├── AuthError            401/403: missing or wrong DSN key, unknown project
    │   ├── PayloadTooLarge      413: an event or envelope over the size limits
    │   └── RateLimited          429: the project's event rate is over its limit
    ├── EventFileError           an exported event file could not be read or parsed
    ├── CodePathError            the repository could not be read (not a git repository, bad revision)
    ├── BudgetExhausted          an issue's run or CPU budget is spent; a person must reset it
    ├── ReceiptTampered          a receipt's stored test or fix no longer matches the hashes its gates ran on
    ├── IsolationUnavailable     the kernel cannot sandbox candidate code, and isolation is required: nothing ran
    ├── SentryAPIError           the Sentry REST API refused or failed a request
    ├── Quarantined              agent work touching a path an andon cord quarantined; a person releases it
    ├── LineageHalted            an issue lineage stopped (fixes with no effect, cost spent); a person resets it
    ├── RevertRefused            an andon revert prodloop will not push (a conflict, nothing to revert, a secret)
    ├── HealRefused              a healed CI test prodloop will not judge or ship (not test rot, weakened, moved)
    └── SuiteChangeRefused       a test-suite change (move, removal, quarantine) prodloop will not push

Messages are built inside each class from structured fields and always say what was
wrong and what to do. No message ever carries a secret or an unscrubbed production value.
"""

from __future__ import annotations


class ProdloopError(Exception):
    """Base of every deliberate prodloop error."""


class ConfigError(ProdloopError):
    def __init__(self, setting: str, problem: str, fix: str) -> None:
        self.setting = setting
        super().__init__(f"setting {setting!s}: {problem}; {fix}")


class StoreError(ProdloopError):
    def __init__(self, operation: str, path: str, cause: str) -> None:
        self.operation = operation
        self.path = path
        fix = (
            "check that the PostgreSQL server answers at that address and the user may use that database"
            " (prodloop creates its tables there), or set PRODLOOP_DATABASE_URL to another database"
            if path.startswith(("postgresql://", "postgres://"))
            else "check that the data directory is writable and not on a network file system, or set"
            " PRODLOOP_DATABASE_URL to another SQLite file"
        )
        super().__init__(f"store {operation} failed for {path}: {cause}; {fix}")


class NotFoundError(ProdloopError):
    def __init__(self, kind: str, ident: str, hint: str) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"no {kind} with id {ident}; {hint}")


class ReceiptTampered(ProdloopError):
    def __init__(self, receipt_id: str, what: str) -> None:
        self.receipt_id = receipt_id
        super().__init__(
            f"receipt {receipt_id}: the stored {what} no longer matches the hash recorded when its gates ran, so "
            "nothing it proved holds; run_candidate_test again with the test and fix you mean"
        )


class IsolationUnavailable(ProdloopError):
    def __init__(self) -> None:
        super().__init__(
            "this machine does not let prodloop sandbox candidate code (unprivileged user namespaces are off), so no "
            "candidate code was run; enable them (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 an "
            "AppArmor profile that grants userns, see SECURITY.md) or, knowingly, set "
            "PRODLOOP_GATES__REQUIRE_ISOLATION=false to run tests unconfined"
        )


class InvalidArgument(ProdloopError):
    def __init__(self, argument: str, problem: str, fix: str) -> None:
        self.argument = argument
        super().__init__(f"argument {argument}: {problem}; {fix}")


class IngestError(ProdloopError):
    """An ingest request refused with `status` and a message meant for the sender's operator."""

    status = 400

    def __init__(self, problem: str, fix: str, *, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        self.problem = problem
        super().__init__(f"{problem}; {fix}")


class AuthError(IngestError):
    status = 401


class PayloadTooLarge(IngestError):
    status = 413

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} is {size} bytes, over the limit of {limit} bytes",
            "send smaller events (trim breadcrumbs and local variables) or raise the limit in [tool.prodloop]",
        )


class RateLimited(IngestError):
    status = 429

    def __init__(self, project_id: int, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"project {project_id} is over its event rate limit",
            f"retry after {retry_after:.0f} s, or raise ingest_rate_limit in [tool.prodloop]",
        )


class EventFileError(ProdloopError):
    def __init__(self, path: str, where: str, problem: str) -> None:
        self.path = path
        super().__init__(
            f"{path} ({where}): {problem}; give a Sentry event JSON object, a JSON array of events, "
            "or JSON lines with one event per line"
        )


class CodePathError(ProdloopError):
    def __init__(self, repo: str, problem: str, fix: str) -> None:
        self.repo = repo
        super().__init__(f"repository {repo}: {problem}; {fix}")


class BudgetExhausted(ProdloopError):
    def __init__(self, issue_id: int, spent: str) -> None:
        self.issue_id = issue_id
        super().__init__(
            f"the budget of issue {issue_id} is exhausted ({spent}); it was escalated to a person, "
            f"who can allow more with `prodloop budget reset {issue_id} --by NAME --why TEXT`"
        )


class SentryAPIError(ProdloopError):
    def __init__(self, request: str, problem: str, fix: str) -> None:
        self.request = request
        super().__init__(f"Sentry API {request}: {problem}; {fix}")


class GitError(CodePathError):
    """A git command failed, timed out, or was refused before it ran (a name that git could read as an option)."""


class PullRequestRefused(ProdloopError):
    def __init__(self, receipt_id: str, problem: str, fix: str) -> None:
        super().__init__(f"open_pr refused for receipt {receipt_id}: {problem}; {fix}")


class HealRefused(ProdloopError):
    def __init__(self, what: str, problem: str, fix: str) -> None:
        super().__init__(f"heal refused for {what}: {problem}; {fix}")


class MutationRefused(ProdloopError):
    def __init__(self, receipt_id: str, problem: str, fix: str) -> None:
        super().__init__(f"receipt {receipt_id}: {problem}; {fix}")


class GitHubError(ProdloopError):
    def __init__(self, action: str, status: int | None, message: str) -> None:
        self.status = status
        hint = {
            401: "the token was rejected: check github_token",
            403: "the token lacks permission: it needs pull requests and contents write on the repository",
            404: "the repository was not found with this token: check github_repo and the token's access",
            422: "GitHub refused the request as invalid (a PR for this branch may already exist)",
        }.get(status or 0, "see GitHub's message")
        super().__init__(f"GitHub {action} failed (HTTP {status}): {message[:300]}; {hint}")


class TriageRefused(ProdloopError):
    """Agent work on a triaged issue that triage's mode does not clear (see `tools/observe/triage.py`)."""

    def __init__(self, issue_id: int, action: str, why: str, fix: str) -> None:
        self.issue_id = issue_id
        super().__init__(f"{action} on issue {issue_id} refused: {why}; {fix}")


class Quarantined(ProdloopError):
    """Agent work touching a path an andon cord quarantined (see `tools/observe/andon.py`): only a person lifts it."""

    def __init__(self, action: str, paths: list[str], cord_id: int, release: str) -> None:
        self.cord_id = cord_id
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        super().__init__(
            f"{action} refused: {shown} is quarantined by andon cord {cord_id} (deploy {release[:80]} made things "
            f"worse there); a person releases it: prodloop andon release {cord_id} --by NAME --why TEXT"
        )


class LineageHalted(ProdloopError):
    """Agent work on an issue lineage a stopping condition halted (no-effect iterations, cost): a person resets it."""

    def __init__(self, issue_id: int, action: str, why: str) -> None:
        self.issue_id = issue_id
        super().__init__(
            f"{action} on issue {issue_id} refused: the lineage is halted ({why}) and escalated; a person resets it: "
            f"prodloop budget reset {issue_id} --by NAME --why TEXT"
        )


class RevertRefused(ProdloopError):
    """A revert prodloop will not push: it conflicts, reverts nothing, or would carry a secret. Nothing was pushed."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        super().__init__(f"revert {key} refused: {problem}; nothing was pushed; {fix}")


class SuiteChangeRefused(ProdloopError):
    """A test-suite change (move, removal, quarantine, lift) prodloop will not push. Nothing was pushed."""

    def __init__(self, what: str, problem: str, fix: str) -> None:
        self.what = what
        super().__init__(f"{what} refused: {problem}; nothing was pushed; {fix}")
