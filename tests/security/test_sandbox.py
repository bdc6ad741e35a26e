"""The sandbox contains what a test starts: no process of a run outlives it, and runs share no scratch space."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from prodloop.server.context import AppContext
from prodloop.tools.engine.sandbox import isolation_available
from prodloop.tools.judge.candidate import run_candidate_for_issue

DAEMON_TEST = """
import os
import time

from shop.pricing import cart_total


def _running(token):
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and token in open(f"/proc/{{pid}}/cmdline").read():
                return True
        except OSError:
            pass
    return False


def test_unknown_sku_costs_nothing():
    if os.fork() == 0:  # a double-forked daemon, detached from the test's session
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", {token!r}])
        os._exit(0)
    os.wait()
    deadline = time.time() + 10
    while not _running({token!r}) and time.time() < deadline:
        time.sleep(0.05)
    assert _running({token!r})  # the daemon really started
    assert cart_total({{"items": [{{"sku": "apple", "qty": 2}}, {{"sku": "kiwi", "qty": 1}}]}}) == 60
"""

HIDDEN_CHANNEL_TEST = """
import os
import sys

from shop.pricing import cart_total


def test_unknown_sku_costs_nothing():
    markers = [k for k in os.environ if k.startswith("PRODLOOP_") or k == "PYTEST_PLUGINS"]
    assert markers == [], markers
    assert not [a for a in sys.argv if "probe" in a.lower() or "junit" in a.lower()], sys.argv
    fds = [f"/proc/self/fd/{{n}}" for n in range(3, 300)]
    pipes = [fd for fd in fds if os.path.exists(fd) and "pipe:" in os.readlink(fd)]
    assert pipes == [], pipes
    assert cart_total({{"items": [{{"sku": "apple", "qty": 2}}, {{"sku": "kiwi", "qty": 1}}]}}) == 60
"""

SHARED_SPACE_TEST = """
import os

from shop.pricing import cart_total


def test_unknown_sku_costs_nothing():
    seen = sorted(set(os.listdir("/tmp")) | set(os.listdir("/dev/shm")) | set(os.listdir(os.path.expanduser("~"))))
    assert {marker!r} not in seen and {home_marker!r} not in seen, seen
    assert cart_total({{"items": [{{"sku": "apple", "qty": 2}}, {{"sku": "kiwi", "qty": 1}}]}}) == 60
"""


def _host_processes_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not isolation_available(), reason="needs unprivileged user namespaces")
def test_a_double_forked_daemon_dies_with_its_run(service_ctx: Callable[..., AppContext]) -> None:
    token = f"{90 + uuid.uuid4().int % 9}.{uuid.uuid4().int % 10**9:09d}"  # a unique `sleep` duration
    ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})  # the layer behind the hermetic gate
    result = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=1, test_code=DAEMON_TEST.format(token=token), fix_diff=None
    )
    gates = {g.name: g for g in result.gates}
    assert "reaches os.fork" in gates["hermetic"].evidence
    # It got as far as the service's crash, past its own check that the daemon runs: otherwise it proves nothing.
    assert "fails on the deployed code with KeyError" in gates["reproduces"].evidence, gates["reproduces"].evidence
    time.sleep(0.3)
    leftover = _host_processes_with(token)
    for pid in leftover:
        os.kill(pid, 9)
    assert not leftover, "a process the test started still runs after its run ended"


@pytest.mark.skipif(not isolation_available(), reason="needs unprivileged user namespaces")
def test_a_run_sees_an_empty_private_tmp_shm_and_home(service_ctx: Callable[..., AppContext]) -> None:
    marker = f"prodloop-other-run-{uuid.uuid4().hex}"
    home_marker = f".prodloop-secret-{uuid.uuid4().hex}"
    made = [Path("/tmp") / marker, Path("/dev/shm") / marker, Path.home() / home_marker]
    for path in made:
        path.write_text("another run's file, or a credential")
    try:
        ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})
        code = SHARED_SPACE_TEST.format(marker=marker, home_marker=home_marker)
        result = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=code, fix_diff=None)
        evidence = {g.name: g.evidence for g in result.gates}
        # It got as far as the service's crash: nothing of another run or of the home directory was in sight.
        assert "fails on the deployed code with KeyError" in evidence["reproduces"], evidence["reproduces"]
    finally:
        for path in made:
            path.unlink()


def test_without_namespaces_no_candidate_code_runs_unless_a_person_opts_out(
    service_ctx: Callable[..., AppContext], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prodloop.server.errors import IsolationUnavailable

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "unshare").write_text("#!/bin/sh\nexit 1\n")  # a kernel that refuses user namespaces
    (fake / "unshare").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    marker = tmp_path / "candidate-code-ran"
    test = f"open({str(marker)!r}, 'w').close()\n\n\ndef test_it():\n    assert True\n"
    ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})
    with pytest.raises(IsolationUnavailable, match="no candidate code was run"):
        run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=test, fix_diff=None)
    assert not marker.exists()
    opted_out = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True, "require_isolation": False})
    result = run_candidate_for_issue(*opted_out.collaborators(), issue_id=1, test_code=test, fix_diff=None)
    assert marker.exists() and not result.checkout_protected  # it ran, unconfined, because a person said so


PLANTING_TEST = """
import site

from shop.pricing import cart_total


def test_unknown_sku_costs_nothing():
    planted = []
    for folder in [*site.getsitepackages(), {own!r}]:
        try:
            with open(folder + "/{name}", "w") as fh:
                fh.write("import os  # would run in every later interpreter start")
            planted.append(folder)
        except OSError:
            pass
    assert not planted, planted
    assert cart_total({{"items": [{{"sku": "apple", "qty": 2}}, {{"sku": "kiwi", "qty": 1}}]}}) == 60
"""


@pytest.mark.skipif(not isolation_available(), reason="needs unprivileged user namespaces")
def test_a_run_cannot_plant_code_in_the_interpreters_or_in_prodloop(service_ctx: Callable[..., AppContext]) -> None:
    import prodloop.tools

    own = str(Path(prodloop.tools.__file__).resolve().parent)
    name = f"planted-{uuid.uuid4().hex}.pth"
    ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})
    result = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=1, test_code=PLANTING_TEST.format(own=own, name=name), fix_diff=None
    )
    reproduces = next(g.evidence for g in result.gates if g.name == "reproduces")
    assert "fails on the deployed code with KeyError" in reproduces, reproduces  # past its own check: nothing planted
    import site

    assert not [d for d in [*site.getsitepackages(), own] if (Path(d) / name).exists()]


HOST_WRITE_TEST = """
from shop.pricing import cart_total


def test_unknown_sku_costs_nothing(tmp_path):
    (tmp_path / "own.txt").write_text("a run writes its own scratch")
    written = []
    for folder in {folders!r}:
        try:
            with open(folder + "/{name}", "w") as fh:
                fh.write("planted by a run")
            written.append(folder)
        except OSError:
            pass
    assert not written, written
    assert cart_total({{"items": [{{"sku": "apple", "qty": 2}}, {{"sku": "kiwi", "qty": 1}}]}}) == 60
"""


@pytest.mark.skipif(not isolation_available(), reason="needs unprivileged user namespaces")
def test_a_run_writes_nothing_of_the_host_but_its_own_tree_and_scratch(
    service_ctx: Callable[..., AppContext], tmp_path: Path
) -> None:
    ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})
    # Places a host process of this user can write: system folders (the user may be root), another checkout
    # beside this one, the checkout's git data, cgroup files, /dev.
    sibling = tmp_path / "another-checkout"
    sibling.mkdir()
    candidates = ["/etc", "/usr/local/bin", "/var/lib", "/opt", "/dev", "/sys/fs/cgroup", str(sibling),
                  str(ctx.settings.repo / ".git"), str(ctx.settings.repo / ".git" / "hooks")]  # fmt: skip
    folders = [f for f in candidates if os.path.isdir(f) and os.access(f, os.W_OK)]
    assert str(sibling) in folders
    name = f"planted-{uuid.uuid4().hex}"
    code = HOST_WRITE_TEST.format(folders=folders, name=name)
    try:
        result = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=code, fix_diff=None)
        reproduces = next(g.evidence for g in result.gates if g.name == "reproduces")
        assert "fails on the deployed code with KeyError" in reproduces, reproduces  # past its check: nothing written
    finally:
        planted = [f for f in folders if (Path(f) / name).exists()]
        for folder in planted:
            (Path(folder) / name).unlink()
    assert planted == []


def test_a_repositorys_venv_file_cannot_bind_a_folder_that_is_no_python_install_into_a_run(tmp_path: Path) -> None:
    import sys

    from prodloop.tools.engine.sandbox import Guard, Limits, confine

    creds = Path.home() / f".prodloop-creds-{uuid.uuid4().hex}"  # not an installation: no lib/
    (creds / "bin").mkdir(parents=True)
    try:
        venv = tmp_path / ".venv"
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").symlink_to(sys.executable)
        (venv / "pyvenv.cfg").write_text(f"home = {creds / 'bin'}\n")  # what a stranger's branch could commit
        command, _ = confine([str(venv / "bin" / "python"), "-c", "pass"], Limits(10, 10, 512), Guard(tmp_path))
        assert str(creds) not in " ".join(command)
        assert str(Path(sys.base_prefix).resolve()) in " ".join(command)  # the real installation is still bound
    finally:
        (creds / "bin").rmdir()
        creds.rmdir()


def test_doctor_names_what_keeps_user_namespaces_off_and_the_narrow_fix(tmp_path: Path) -> None:
    from prodloop.server.doctor import APPARMOR_PROFILE, namespace_blocker

    def proc(**knobs: str) -> Path:
        root = tmp_path / "-".join(sorted(knobs)) / "sys"
        for name, value in knobs.items():
            (root / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
            (root / name.replace("__", "/")).write_text(value + "\n")
        return root

    problem, fix = namespace_blocker(proc(kernel__apparmor_restrict_unprivileged_userns="1"))
    assert "AppArmor" in problem and "apparmor_parser -r /etc/apparmor.d/prodloop-unshare" in fix
    assert "sysctl" in namespace_blocker(proc(kernel__unprivileged_userns_clone="0"))[1]
    assert "max_user_namespaces" in namespace_blocker(proc(user__max_user_namespaces="0"))[1]
    assert "container" in namespace_blocker(proc(kernel__apparmor_restrict_unprivileged_userns="0"))[0]
    # The profile the docs and the Actions example install is the one doctor means, word for word.
    root = Path(__file__).resolve().parents[2]
    example = (root / "examples" / "github-actions-prodloop.yml").read_text()
    indented = "".join(f"          {line}".rstrip() + "\n" for line in APPARMOR_PROFILE.splitlines())
    assert indented in example
    assert f"```\n{APPARMOR_PROFILE}```" in (root / "SECURITY.md").read_text()


def test_a_run_may_have_at_most_a_bounded_number_of_processes(tmp_path: Path) -> None:
    """A fork bomb in service code stops at the run's process limit (the kernel exempts only the real root user,
    so this machine's root still sees the limit set, and a non-root user is held to it). Counted in the run's own
    user namespace (Linux >= 5.14), so the user's other processes never count."""
    import subprocess
    import sys

    from prodloop.tools.engine.sandbox import MAX_PROCESSES, Guard, Limits, confine

    read = "print(next(l for l in open('/proc/self/limits') if l.startswith('Max processes')))"
    command, _ = confine([sys.executable, "-c", read], Limits(10, 10, 512), Guard(tmp_path))
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[2:4] == [str(MAX_PROCESSES), str(MAX_PROCESSES)]


@pytest.mark.skipif(not isolation_available(), reason="needs unprivileged user namespaces")
def test_a_repositorys_sitecustomize_never_runs_while_the_sandbox_is_being_built(tmp_path: Path) -> None:
    """prodloop's own interpreter sets the run's namespace up (loopback, read-only mounts) with the run's
    environment, whose PYTHONPATH points at the repository: it must not import the repository's
    `sitecustomize.py`, which would run as root of the namespace before the mounts are locked."""
    import subprocess

    from prodloop.tools.engine.sandbox import Guard, Limits, confine

    repo, outside = tmp_path / "repo", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    marker = outside / "sitecustomize-ran"
    (repo / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'a').write('ran\\n')\n")
    command, _ = confine(["true"], Limits(10, 10, 512), Guard(repo))
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=repo, env=env)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()


def test_the_result_channel_is_out_of_the_tests_sight(service_ctx: Callable[..., AppContext]) -> None:
    """No PRODLOOP_* variable, no probe name in argv, no result file and no pipe at a predictable descriptor: the
    results come back on a pipe the probe moved to a random descriptor before any test ran."""
    ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})
    result = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=1, test_code=HIDDEN_CHANNEL_TEST.format(), fix_diff=None
    )
    evidence = {g.name: g.evidence for g in result.gates}
    # It got as far as the service's crash: every look for the channel came back empty.
    assert "fails on the deployed code with KeyError" in evidence["reproduces"], evidence["reproduces"]


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"results": [], "coverage": {}}',
        b'{"results": {"_collected": [["a"], 5, "t::x"], "t::x": {"outcome": {"outcome": "passed", "seconds": "x"},'
        b' "phases": [], "raised": 5}}, "coverage": {"/tree/a\\u0000.py": [1], "b.py": "all"}}',
        b'{"results": {"_collected": ["t::x"], "t::x": {"outcome": {"outcome": "won"}}, "_order": 3}}',
        b'{"results": {"_collected": ["t::x"], "t::x": {"outcome": {"outcome": "failed", "seconds": true,'
        b' "message": 7}, "phases": {"call": [{"type": 1}, {"type": "E", "qualified_type": "m.E", "message": "m",'
        b' "frames": [{"filename": "f.py", "lineno": "3"}, {"filename": "f.py", "lineno": 3, "function": "f"}]}]}}}}',
    ],
)
def test_whatever_a_run_sends_back_is_read_by_type_and_never_crashes_the_host(payload: bytes) -> None:
    from prodloop.tools.engine.sandbox import _outcome, _received, _strings

    channel = _received(payload)
    results = channel.get("results", {})
    outcomes = [o for n in _strings(results.get("_collected")) if (o := _outcome(n, results.get(n))) is not None]
    for outcome in outcomes:
        assert outcome.outcome in ("passed", "failed", "error", "skipped")
        assert isinstance(outcome.seconds, float) and isinstance(outcome.message, str)
        for exc in outcome.chain:
            assert all(isinstance(f["lineno"], int) for f in exc["frames"])
    if b"qualified_type" in payload:
        (failed,) = outcomes
        assert failed.chain == [{"type": "E", "qualified_type": "m.E", "message": "m",
                                 "frames": [{"filename": "f.py", "lineno": 3, "function": "f"}]}]  # fmt: skip


@pytest.mark.skipif(not isolation_available(), reason="needs unprivileged user namespaces")
def test_a_run_changes_no_kernel_setting_reaches_no_host_socket_and_sees_only_harmless_devices(
    tmp_path: Path,
) -> None:
    """Even as root outside: /proc/sys is read-only (core_pattern would run a file of the run's on the host), /dev
    holds only null, zero, full, random, urandom and tty, and the host's Unix sockets under /run are out of reach."""
    import socket
    import subprocess

    from prodloop.tools.engine.sandbox import Guard, Limits, confine

    listening = None
    if os.access("/run", os.W_OK):
        listening = f"/run/prodloop-test-{uuid.uuid4().hex}.sock"
        server = socket.socket(socket.AF_UNIX)
        server.bind(listening)
        server.listen()
    script = (
        "cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern 2>/dev/null && echo KERNEL-SETTING\n"
        "echo hi > /dev/kmsg 2>/dev/null && echo KMSG\n"
        "ls /dev\n"
        f"[ -n '{listening or ''}' ] && [ -e '{listening or '/nonexistent'}' ] && echo HOST-SOCKET\n"
        "echo probe > /dev/null && echo NULL-WORKS\n"
    )
    try:
        command, _ = confine(["sh", "-c", script], Limits(10, 10, 512), Guard(tmp_path))
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    finally:
        if listening:
            server.close()
            os.unlink(listening)
    assert "NULL-WORKS" in done.stdout, done.stderr
    for escaped in ("KERNEL-SETTING", "KMSG", "HOST-SOCKET"):
        assert escaped not in done.stdout, (escaped, done.stdout)
    devices = set(done.stdout.split("NULL-WORKS")[0].split())
    assert {"null", "urandom", "tty"} <= devices and not devices & {"kmsg", "mem", "sda", "vda", "console"}


SWAPS_ITS_LOG = """
import os

def test_unknown_sku_costs_nothing():
    log = os.path.join(os.environ["HOME"], "output.txt")
    os.unlink(log)
    os.symlink({secret!r}, log)
    os._exit(3)  # no outcome reaches prodloop: the gates quote the run's output instead
"""


@pytest.mark.skipif(not isolation_available(), reason="needs unprivileged user namespaces")
def test_a_run_that_swaps_its_log_for_a_symlink_reads_prodloop_no_host_file(
    service_ctx: Callable[..., AppContext], tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HOST-SECRET-" + uuid.uuid4().hex)
    ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})
    result = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=1, test_code=SWAPS_ITS_LOG.format(secret=str(secret)), fix_diff=None
    )
    evidence = " ".join(g.evidence for g in result.gates)
    assert "the test did not run" in evidence  # the output tail is what the gates show
    assert secret.read_text() not in evidence
