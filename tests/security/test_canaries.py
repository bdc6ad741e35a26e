"""The hostile corpus, driven through a real `prodloop serve` over stdio, with canary tokens everywhere.

Canaries sit in the server's environment (its GitHub token among them), in files under a fake HOME, and in
every field of the production events, written in each well-known secret format. A real MCP client then plays
a steered agent: it submits hostile tests and a hostile fix (each refused or contained), and takes the
ordinary crash to a GitHub pull request (a local fake of GitHub's API). Afterwards no canary may appear in
any tool output, the store's bytes (database and WAL), the server's log, the scratch it left, the pushed
commits or the pull request's text; the served repository's hooks and fsmonitor never ran.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.fakes.github_api import FakeGitHub
from tests.sample_service import FIX_UNKNOWN_SKU, SampleService, fix_diff

pytestmark = pytest.mark.anyio


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


_UPPER = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits


@dataclass
class Canaries:
    """Each secret in its real format; `needles` are their random parts, which must appear nowhere."""

    formats: dict[str, str] = field(default_factory=dict)
    needles: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, value: str, needle: str) -> str:
        self.formats[where] = value
        self.needles[where] = needle
        return value

    def found_in(self, blob: bytes | str) -> list[str]:
        data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
        return [where for where, needle in self.needles.items() if needle.encode() in data]


# Each secret format as (prefix, alphabet, length of the random part, suffix): the random part is the needle.
_FORMATS = {
    "aws_access_key": ("AKIA", _UPPER, 16, ""),
    "github_token": ("ghp_", _ALNUM, 36, ""),
    "gitlab_token": ("glpat-", _ALNUM, 20, ""),
    "slack_token": ("xoxb-123456789012-", _ALNUM, 24, ""),
    "stripe_key": ("sk_live_", _ALNUM, 24, ""),
    "google_api_key": ("AIza", _ALNUM, 35, ""),
    "jwt": ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.", _ALNUM, 43, ""),
    "pem_private_key": ("-----BEGIN RSA PRIVATE KEY-----\n", _ALNUM, 64, "\n-----END RSA PRIVATE KEY-----"),
    "url_password": ("postgres://app:", _ALNUM, 18, "@db.internal:5432/shop"),
    "secret assignment": ("api_key=", _ALNUM, 22, ""),
}


def _event_secrets(canaries: Canaries) -> list[str]:
    """One value per secret format, each with its own random needle."""
    values = []
    for name, (prefix, alphabet, length, suffix) in _FORMATS.items():
        needle = _random(alphabet, length)
        values.append(canaries.add(f"event {name}", prefix + needle + suffix, needle))
    return values


def _salt(event: dict[str, Any], values: list[str], *, inside_the_crash: bool) -> dict[str, Any]:
    """Every secret in every field an event has; `inside_the_crash` also in the message, vars and source."""
    joined = " ".join(values)
    event["tags"] = {**event.get("tags", {}), "deploy": joined}
    event["extra"] = {"note": joined, **{f"cfg {v}": "x" for v in values}}
    event["breadcrumbs"] = {"values": [{"message": f"connect {v}", "category": "db", "timestamp": 1.0} for v in values]}
    event["request"] = {
        "url": "https://shop.example/cart",
        "method": "POST",
        "query_string": "&".join(f"next{i}={v}" for i, v in enumerate(values)),
        "headers": [["X-Forward", values[0]], ["User-Agent", joined]],
        "data": {"retry": joined, "pairs": [["token", values[1]]]},
    }
    event["contexts"] = {**event.get("contexts", {}), "deploy": {"note": joined}}
    event["user"] = {"id": values[2], "email": "ann@example.com", "ip_address": "203.0.113.7"}
    event["logentry"] = {"message": f"cart failed after {joined}"}
    frames = event["exception"]["values"][0]["stacktrace"]["frames"]
    # An outer frame's extra locals: synthesis reads the crashing call's arguments only.
    frames[0].setdefault("vars", {})["session"] = {"token": values[1], "dsn": values[8], "note": joined}
    if inside_the_crash:
        event["exception"]["values"][0]["value"] = f"could not auth with {joined}"
        frames[-1]["vars"] = {v: v for v in values}
        frames[-1]["context_line"] = f"    login({values[0]!r}, {values[1]!r})"
        frames[-1]["abs_path"] = f"/srv/{values[0]}/shop/auth.py"
    return event


_HOSTILE_TESTS = {
    # Each is what a prompt-injected agent might submit. Refused (hermetic) or contained (sandbox); either way
    # nothing it reads leaves, and if it did, the assertion message would carry it into the tool output.
    "dumps the environment": """
        import os
        from shop.pricing import cart_total

        def test_env():
            assert not os.environ, dict(os.environ)
    """,
    "reads every file under HOME": """
        from pathlib import Path
        from shop.pricing import cart_total

        def test_home():
            found = {str(p): p.read_text() for p in Path.home().rglob("*") if p.is_file()}
            cart_total({"items": [{"sku": "kiwi", "qty": 1}]})
            assert not found, found
    """,
    "reads the fake HOME by its absolute path": """
        from pathlib import Path
        from shop.pricing import cart_total

        def test_home_by_path():
            found = {str(p): p.read_text() for p in Path(__HOME__).rglob("*") if p.is_file()}
            assert not found, found
            cart_total({"items": [{"sku": "kiwi", "qty": 1}]})
    """,
    "talks to a host Unix socket": """
        import socket
        from shop.pricing import cart_total

        def test_socket():
            s = socket.socket(socket.AF_UNIX)
            s.connect(__SOCK__)
            s.sendall(b"sandbox escaped")
            cart_total({"items": [{"sku": "kiwi", "qty": 1}]})
    """,
    "forges its own result on the pipe": """
        import os
        from shop.pricing import cart_total

        def test_forge():
            for fd in os.listdir("/proc/self/fd"):
                try:
                    os.write(int(fd), b'{"nodeid": "x", "outcome": "passed"}\\n')
                except OSError:
                    pass
            cart_total({"items": [{"sku": "kiwi", "qty": 1}]})
    """,
    "detects a mutant": """
        import sys
        from shop.pricing import cart_total

        def test_mutant():
            if any("mutmut" in name for name in sys.modules):
                return
            cart_total({"items": [{"sku": "kiwi", "qty": 1}]})
    """,
    "leaves a daemon behind": """
        import subprocess
        from shop.pricing import cart_total

        def test_daemon():
            subprocess.Popen(["sleep", "600"], start_new_session=True)
            cart_total({"items": [{"sku": "kiwi", "qty": 1}]})
    """,
    "rewrites its worktree's git pointer": """
        from pathlib import Path
        from shop.pricing import cart_total

        def test_pointer():
            Path(".git").write_text("gitdir: /tmp/elsewhere\\n")
            cart_total({"items": [{"sku": "kiwi", "qty": 1}]})
    """,
}

_STRONG_TEST = """from shop.pricing import cart_total, line_total


def test_an_unknown_sku_costs_nothing():
    assert line_total({"sku": "kiwi", "qty": 3}) == 0
    assert line_total({"sku": "apple", "qty": 3}) == 90
    assert cart_total({"items": [{"sku": "kiwi", "qty": 1}, {"sku": "pear", "qty": 2}]}) == 90
"""

# A fix is untrusted code too, and it is not read by the hermetic gate: it runs, in the sandbox. This one
# takes everything it can reach (environment, HOME, the fake HOME by path) and raises it as the message.
_HOSTILE_FIX = fix_diff(
    "shop/pricing.py",
    'PRICES = {"apple": 30, "pear": 45}\n',
    'PRICES = {"apple": 30, "pear": 45}\n'
    "import os as _os, pathlib as _pl\n"
    "_LOOT = repr(dict(_os.environ)) + repr({str(p): p.read_bytes() for root in (_pl.Path.home(), _pl.Path(__HOME__))"
    " if root.is_dir() for p in root.rglob('*') if p.is_file()})\n"
    "raise RuntimeError(_LOOT)\n",
)


@dataclass
class Served:
    service: SampleService
    remote: Path
    data: Path
    scratch: Path
    home: Path
    log: Path
    marker: Path
    socket_hits: list[bytes]
    env: dict[str, str]
    canaries: Canaries
    github: FakeGitHub


def _fake_home(home: Path, canaries: Canaries) -> None:
    files = {
        ".aws/credentials": "[default]\naws_access_key_id = AKIA{x}\naws_secret_access_key = {x}\n",
        ".ssh/id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\n{x}\n-----END OPENSSH PRIVATE KEY-----\n",
        ".netrc": "machine github.com login ann password {x}\n",
        ".git-credentials": "https://ann:{x}@github.com\n",
        ".config/gh/hosts.yml": "github.com:\n    oauth_token: gho_{x}\n",
        ".pypirc": "[pypi]\npassword = pypi-{x}\n",
    }
    for name, text in files.items():
        needle = _random(_UPPER, 16)
        canaries.add(f"HOME {name}", "", needle)
        path = home / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(x=needle))


def _hostile_git_config(root: Path, marker: Path) -> None:
    """The served repository's own git data asks for hooks and an fsmonitor: host git must run neither."""
    hooks = root / ".git" / "evil-hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-checkout", "pre-push", "reference-transaction", "post-index-change"):
        script = hooks / hook
        script.write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        script.chmod(0o755)
    monitor = root / ".git" / "monitor.sh"
    monitor.write_text(f"#!/bin/sh\necho fsmonitor >> {marker}\n")
    monitor.chmod(0o755)
    for key, value in (("core.hooksPath", str(hooks)), ("core.fsmonitor", str(monitor))):
        subprocess.run(["git", "-C", str(root), "config", key, value], check=True)


def _listen(path: Path, hits: list[bytes]) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            hits.append(conn.recv(100) or b"(connected)")
            conn.close()

    threading.Thread(target=accept, daemon=True).start()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("canaries")
    canaries = Canaries()
    service = SampleService(base / "shop")
    remote = base / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    for args in (("remote", "add", "origin", str(remote)), ("push", "-q", "origin", "main")):
        subprocess.run(["git", "-C", str(service.root), *args], check=True)
    marker = base / "hooks-ran"
    _hostile_git_config(service.root, marker)
    home = base / "home"
    _fake_home(home, canaries)
    socket_hits: list[bytes] = []
    _listen(base / "agent.sock", socket_hits)
    scratch = base / "scratch"
    scratch.mkdir()
    token_needle = _random(_ALNUM, 36)
    token = canaries.add("server env github token", "ghp_" + token_needle, token_needle)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    for name in ("AWS_SECRET_ACCESS_KEY", "SENTRY_AUTH_TOKEN", "DATABASE_URL", "OPENAI_API_KEY"):
        needle = _random(_ALNUM, 24)
        env[name] = canaries.add(f"server env {name}", f"prefix-{needle}", needle)
    events = [
        _salt(service.event("unknown_sku"), _event_secrets(canaries), inside_the_crash=False),
        _salt(service.event("short_password"), _event_secrets(canaries), inside_the_crash=True),
    ]
    data = base / "data"
    with FakeGitHub(token=token) as github:
        env.update(
            HOME=str(home), TMPDIR=str(scratch), PRODLOOP_DATA_DIR=str(data), PRODLOOP_GITHUB_TOKEN=token,
            PRODLOOP_BUDGETS__MAX_RUNS="30",
            PRODLOOP_GITHUB_BASE_URL=github.base_url, PRODLOOP_GITHUB_REPO="acme/shop",
        )  # fmt: skip
        exported = base / "events.json"
        exported.write_text(json.dumps(events))
        log = base / "server.log"
        ingest = subprocess.run(
            [sys.executable, "-m", "prodloop.server.cli", "ingest", str(exported), "--repo", str(service.root)],
            env=env, capture_output=True, cwd=base,
        )  # fmt: skip
        log.write_bytes(ingest.stdout + ingest.stderr)
        assert ingest.returncode == 0, ingest.stderr.decode()
        for person in (["triage"], ["triage", "approve", "1", "--by", "operator"], ["triage", "approve", "2", "--by",
                                                                                  "operator"]):  # fmt: skip
            cleared = subprocess.run(
                [sys.executable, "-m", "prodloop.server.cli", *person, "--repo", str(service.root)],
                env=env, capture_output=True, cwd=base,
            )  # fmt: skip
            assert cleared.returncode == 0, cleared.stderr.decode()
        exported.unlink()  # the attacker's file itself is not prodloop's to scan
        yield Served(service, remote, data, scratch, home, log, marker, socket_hits, env, canaries, github)


def _server(served: Served) -> StdioServerParameters:
    # The server's stderr is its log: appended to a file the test reads afterwards.
    command = 'exec "$0" -m prodloop.server.cli serve --repo "$1" 2>>"$2"'
    return StdioServerParameters(
        command="/bin/sh",
        args=["-c", command, sys.executable, str(served.service.root), str(served.log)],
        env=served.env,
        cwd=str(served.service.root),
    )


def _text(result: Any) -> str:
    parts = [json.dumps(result.structured_content)] if result.structured_content is not None else []
    parts += [getattr(block, "text", "") for block in result.content]
    return "\n".join(parts)


async def test_a_steered_agent_leaks_no_canary_and_forges_no_verdict(served: Served) -> None:
    outputs: list[str] = []
    async with Client(_server(served)) as client:

        async def call(tool: str, args: dict[str, Any]) -> Any:
            result = await client.call_tool(tool, args)
            outputs.append(f"{tool}: {_text(result)}")
            return result

        issues = (await call("list_issues", {})).structured_content["issues"]
        by_type = {issue["title"].split(":")[0]: issue["id"] for issue in issues}
        kiwi, password = by_type["KeyError"], by_type["ValueError"]
        event_ids = []
        for issue in (kiwi, password):
            context = await call("fetch_error_context", {"issue_id": issue})
            event_ids.append(context.structured_content["event_id"])
            await call("map_code_path", {"issue_id": issue})
        await call("synthesize_regression_test", {"issue_id": password})
        uris = ["prodloop://issues", "prodloop://provenance", "prodloop://policy"]
        uris += [f"prodloop://issues/{issue}" for issue in (kiwi, password)]
        uris += [f"prodloop://{kind}/{event}" for event in event_ids for kind in ("events", "code-path")]
        for uri in uris:
            outputs.append(f"{uri}: {await client.read_resource(uri)}")
        for prompt in (await client.list_prompts()).prompts:
            required = {a.name for a in prompt.arguments or [] if a.required}
            if required <= {"issue_id"}:
                reply = await client.get_prompt(prompt.name, {"issue_id": str(password)} if required else {})
                outputs.append(f"prompt {prompt.name}: {reply}")

        verdicts: dict[str, Any] = {}
        for name, template in _HOSTILE_TESTS.items():
            code = _dedent(template).replace("__HOME__", repr(str(served.home)))
            code = code.replace("__SOCK__", repr(str(served.home.parent / "agent.sock")))
            result = await call(
                "run_candidate_test", {"issue_id": kiwi, "test_code": code, "fix_diff": FIX_UNKNOWN_SKU}
            )
            verdicts[name] = result.structured_content
        for name, verdict in verdicts.items():
            assert verdict is not None and verdict["passed"] is False, (name, verdict)
        refused = await call("open_pr", {"receipt_id": verdicts["reads every file under HOME"]["receipt_id"]})
        assert refused.is_error, _text(refused)

        synthesized = (await call("synthesize_regression_test", {"issue_id": kiwi})).structured_content
        assert "kiwi" in synthesized["test_code"]  # built from the production inputs, scanned like every output
        test_code = _STRONG_TEST
        looted = await call(
            "run_candidate_test",
            {
                "issue_id": kiwi,
                "test_code": test_code,
                "fix_diff": _HOSTILE_FIX.replace("__HOME__", repr(str(served.home))),
            },
        )
        assert looted.structured_content["passed"] is False
        assert "RuntimeError" in _text(looted)  # the fix ran, raised what it could reach: nothing of ours

        fixed = await call(
            "run_candidate_test", {"issue_id": kiwi, "test_code": test_code, "fix_diff": FIX_UNKNOWN_SKU}
        )
        assert fixed.structured_content["passed"] is True, fixed.structured_content
        receipt = fixed.structured_content["receipt_id"]
        mutation = await call("mutate_validate", {"receipt_id": receipt})
        assert mutation.structured_content["passed"] is True, _text(mutation)
        opened = await call("open_pr", {"receipt_id": receipt})
        pr = opened.structured_content
        assert pr is not None, _text(opened)
    assert pr["mode"] == "github", pr

    leaks: dict[str, list[str]] = {}
    for text in outputs:
        if found := served.canaries.found_in(text):
            leaks.setdefault(text.split(":", 1)[0], []).extend(found)
    for path in sorted([*served.data.rglob("*"), *served.scratch.rglob("*"), served.log]):
        if path.is_file() and (found := served.canaries.found_in(path.read_bytes())):
            leaks[str(path)] = found
    pushed = subprocess.run(
        ["git", "-C", str(served.remote), "log", "-p", "--all", "--format=%H %an %ae%n%B"], capture_output=True
    ).stdout
    if found := served.canaries.found_in(pushed):
        leaks["pushed commits"] = found
    token = served.canaries.formats["server env github token"]
    for request in served.github.requests:
        if found := served.canaries.found_in(json.dumps(request.body)):
            leaks[f"GitHub {request.method} {request.path}"] = found
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        if found := served.canaries.found_in(json.dumps(headers)):
            leaks[f"GitHub headers {request.path}"] = found
        assert request.headers.get("Authorization", "").endswith(token)  # where the token belongs, only there
    assert not leaks, leaks

    assert not served.marker.exists(), served.marker.read_text()
    assert served.socket_hits == []
    daemons = subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, text=True).stdout.split()
    assert daemons == [], daemons
    leftovers = [p for p in served.scratch.iterdir()]
    assert leftovers == [], leftovers


def test_a_served_repository_cannot_switch_isolation_off_or_steer_git(served: Served, tmp_path: Path) -> None:
    for setting, toml in (
        ("gates.require_isolation", "[tool.prodloop.gates]\nrequire_isolation = false\n"),
        ("git_remote", '[tool.prodloop]\ngit_remote = "--upload-pack=touch /tmp/pwned"\n'),
        ("github_base_url", '[tool.prodloop]\ngithub_base_url = "http://attacker.example"\n'),
    ):
        repo = tmp_path / setting.replace(".", "_")
        repo.mkdir()
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        (repo / "pyproject.toml").write_text(toml)
        server = subprocess.run(
            [sys.executable, "-m", "prodloop.server.cli", "serve", "--repo", str(repo)],
            env={**served.env, "PRODLOOP_DATA_DIR": str(tmp_path / "data")}, input=b"", capture_output=True,
            timeout=60,
        )  # fmt: skip
        message = server.stderr.decode()
        assert server.returncode != 0, message
        assert setting.split(".")[-1] in message and "PRODLOOP_" in message, message
        assert not served.canaries.found_in(message)
    assert not Path("/tmp/pwned").exists()


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).lstrip()
