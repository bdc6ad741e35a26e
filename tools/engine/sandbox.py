"""Isolated test runs: throwaway worktrees and pytest in a limited subprocess.

A `Workspace` is a `git worktree add --detach` of the deployed commit in a temporary
directory outside the user's checkout (no branch is created; the user's working tree, index
and branches are untouched), removed afterwards. `run_pytest` runs the service's own
interpreter on chosen test files with a wall-clock timeout, CPU-time and address-space
limits, an environment stripped to the essentials (no tokens, no DSNs), and, where Linux
user namespaces allow, the user's checkout mounted read-only. Outcomes, exception chains and
coverage come from prodloop's probe plugin (`child/probe.py`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prodloop.server.errors import CodePathError, GitError, IsolationUnavailable
from prodloop.server.settings import Settings
from prodloop.tools.engine.git_repo import GitRepo

_PROBE = Path(__file__).parents[1] / "child" / "probe.py"
_KEEP_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")


MAX_PROCESSES = 512  # processes and threads one run may have at once: a fork bomb stops here


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float = 60.0
    cpu_seconds: int = 120
    memory_mb: int = 2048


@dataclass
class TestOutcome:
    nodeid: str
    outcome: str  # passed / failed / error / skipped
    seconds: float
    message: str
    chain: list[dict[str, Any]] = field(default_factory=list)
    raised: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunResult:
    exit_code: int | None
    timed_out: bool
    wall_seconds: float
    cpu_seconds: float
    outcomes: dict[str, TestOutcome]
    covered: dict[str, list[int]]
    output_tail: str
    protected_checkout: bool
    order: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    collect_errors: list[str] = field(default_factory=list)


def outcome_of(run: RunResult, node: str) -> TestOutcome | None:
    """The outcome of a test, its parametrized cases folded into one: the first that did not pass, else a pass."""
    if node in run.outcomes:
        return run.outcomes[node]
    cases = [o for nodeid, o in run.outcomes.items() if nodeid.startswith(node + "[")]
    if not cases:
        return None
    worst = next((o for o in cases if o.outcome != "passed"), None)
    if worst is not None:
        return worst
    return TestOutcome(nodeid=node, outcome="passed", seconds=sum(o.seconds for o in cases), message="")


class Workspace:
    """A detached worktree of `commit`, with optional fix and test files applied."""

    def __init__(self, repo: GitRepo, commit: str, root: Path) -> None:
        self.repo = repo
        self.commit = commit
        self.root = root

    def apply_diff(self, diff: str) -> None:
        if not diff.strip():
            return
        patch = self.root.parent / "fix.diff"
        patch.write_text(diff if diff.endswith("\n") else diff + "\n")
        try:
            self.repo.apply(self.root, patch)
        except GitError as exc:
            raise CodePathError(
                str(self.repo.path),
                f"the fix does not apply to commit {self.commit[:12]} ({str(exc)[:300]})",
                "make the diff against the deployed commit (git diff <commit>)",
            ) from exc

    def read_sources(self, paths: list[str]) -> dict[str, str]:
        """The text of these files as they are now (call before any test runs in the tree: it may rewrite them)."""
        out = {}
        for rel in paths:
            path = (self.root / rel).resolve()
            if path.is_relative_to(self.root.resolve()) and path.is_file():
                out[rel] = path.read_text(encoding="utf-8", errors="replace")
        return out

    def write(self, rel: str, text: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise CodePathError(str(self.repo.path), f"test path {rel} leaves the repository", "use a relative path")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@contextmanager
def workspace(repo: GitRepo, commit: str) -> Iterator[Workspace]:
    base = Path(tempfile.mkdtemp(prefix="prodloop-run-"))
    root = base / "tree"
    try:
        repo.add_worktree(root, commit)
        yield Workspace(repo, commit, root)
    finally:
        # Never `git worktree remove`: it would read the tree's `.git` file, which a test may have rewritten to point
        # at a git directory of its own. The tree goes, then the repository forgets it from its own records.
        shutil.rmtree(base, ignore_errors=True)
        repo.prune_worktrees()


def run_pytest(
    ws: Workspace,
    python: Path,
    targets: Sequence[str],
    limits: Limits,
    *,
    guard: Guard | None,
    shuffle_seed: int | None = None,
    run_last: str | None = None,
    cover_files: Sequence[str] = (),
    hash_seed: int = 0,
    extra_args: Sequence[str] = (),
    watch_raises: bool = False,
) -> RunResult:
    """Run pytest on `targets` (paths or node ids relative to the workspace) and read what happened."""
    scratch = Path(tempfile.mkdtemp(prefix="prodloop-probe-"))
    try:
        plugin_dir = scratch / "plugin"
        plugin_dir.mkdir()
        shutil.copy(_PROBE, plugin_dir / "prodloop_probe.py")
        env = sandbox_env(scratch, plugin_dir, *import_roots(ws.root))
        env.update(PYTHONHASHSEED=str(hash_seed), PYTEST_PLUGINS="prodloop_probe")
        if shuffle_seed is not None:
            env["PRODLOOP_SHUFFLE_SEED"] = str(shuffle_seed)
        if run_last is not None:
            env["PRODLOOP_RUN_LAST"] = run_last
        if watch_raises:
            env["PRODLOOP_WATCH_ROOT"] = str(ws.root.resolve())
        if cover_files:
            env["PRODLOOP_COVER_FILE"] = os.pathsep.join(str(ws.root / f) for f in cover_files)
        pytest_args = [
            str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header",
            "-o", "addopts=", "-o", "console_output_style=classic", "--rootdir", str(ws.root),
            *extra_args, *targets,
        ]  # fmt: skip
        ready = scratch / "sandbox-ready"
        command, protected = confine(pytest_args, limits, guard, ready=ready, keep=[ws.root.parent, scratch])
        log = scratch / "output.txt"
        started = time.monotonic()
        # Results come back on a pipe only this process reads, never as files the test could write or find.
        read_end, write_end = os.pipe()
        received: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(read_end, received), daemon=True)
        try:
            env["PRODLOOP_PROBE_FD"] = str(write_end)
            # Read back through the handle it was written through: the run may replace the file's name with a
            # symlink to any host file, never what this handle points at.
            with open(log, "w+b") as out:
                proc = subprocess.Popen(
                    command, cwd=ws.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    pass_fds=(write_end,),
                )  # fmt: skip
                os.close(write_end)
                write_end = -1
                reader.start()
                exit_code, cpu, timed_out = wait(proc, limits.timeout_seconds)
                output = tail_of(out, 2000)
            reader.join(timeout=10)  # every writer is gone with the run's PID namespace
        finally:
            if write_end >= 0:  # the run never started: nobody will read
                os.close(write_end)
                os.close(read_end)
        wall = time.monotonic() - started
        if guard is not None and _namespaces_work() and not ready.exists():
            raise CodePathError(
                str(ws.repo.path),
                f"the sandbox could not be set up: {output[-300:]}",
                "check that unprivileged user namespaces can mount, or report this",
            )
        # Everything below came from the run: each field is checked for its type, whatever else was sent is dropped.
        channel = _received(b"".join(received))
        probe_data, sent_coverage = channel.get("results", {}), channel.get("coverage", {})
        outcomes: dict[str, TestOutcome] = {}
        for nodeid in _strings(probe_data.get("_collected")):
            outcome = _outcome(nodeid, probe_data.get(nodeid))
            if outcome is not None:
                outcomes[nodeid] = outcome
        notes: list[str] = []
        root = str(ws.root.resolve())
        covered: dict[str, list[int]] = {}
        for name, lines in sent_coverage.items():
            if isinstance(name, str) and "\0" not in name and isinstance(lines, list):
                try:
                    key = str(Path(name).resolve().relative_to(root)) if name.startswith(root + "/") else name
                except (ValueError, OSError):
                    continue  # a path that resolves out of the tree is not the tree's
                covered[key] = [n for n in lines if isinstance(n, int) and not isinstance(n, bool)]
        return RunResult(
            exit_code=exit_code,
            timed_out=timed_out,
            wall_seconds=wall,
            cpu_seconds=cpu,
            outcomes=outcomes,
            covered=covered,
            output_tail=output,
            protected_checkout=protected,
            order=_strings(probe_data.get("_order")),
            notes=notes,
            collect_errors=[e[:300] for e in _strings(probe_data.get("_collect_errors"))][:20],
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_MAX_RESULTS = 64 * 1024 * 1024


def _drain(fd: int, into: list[bytes]) -> None:
    """Read the probe's pipe to its end; past `_MAX_RESULTS` bytes the rest is read and dropped."""
    size = 0
    try:
        while chunk := os.read(fd, 1 << 16):
            size += len(chunk)
            if size <= _MAX_RESULTS:
                into.append(chunk)
    finally:
        os.close(fd)


def _received(payload: bytes) -> dict[str, Any]:
    """What the probe sent: a JSON object of results and coverage, or nothing when it sent something else."""
    try:
        data = json.loads(payload) if payload else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or not all(isinstance(data.get(k, {}), dict) for k in ("results", "coverage")):
        return {}
    return data


_OUTCOMES = frozenset({"passed", "failed", "error", "skipped"})


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _outcome(nodeid: str, seen: Any) -> TestOutcome | None:
    """One test's outcome as the probe sent it, or None when it never ran or the record is malformed."""
    record = seen.get("outcome") if isinstance(seen, dict) else None
    if not isinstance(record, dict) or record.get("outcome") not in _OUTCOMES:
        return None
    seconds = record.get("seconds")
    phases = seen.get("phases") if isinstance(seen.get("phases"), dict) else {}
    chain: Any = next((phases[p] for p in ("call", "setup", "teardown") if phases.get(p)), [])
    return TestOutcome(
        nodeid=nodeid, outcome=str(record["outcome"]),
        seconds=float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else 0.0,
        message=str(record.get("message", ""))[:500], chain=_chain_of(chain), raised=_frames_of(seen.get("raised")),
    )  # fmt: skip


def _frames_of(value: Any) -> list[dict[str, Any]]:
    """Frame records (filename, lineno, function, and a type for raised exceptions) with the right types only."""
    out: list[dict[str, Any]] = []
    for item in value[:200] if isinstance(value, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("lineno"), int):
            continue
        if not all(isinstance(item.get(k, ""), str) for k in ("filename", "function", "type")):
            continue
        out.append({k: item[k] for k in ("filename", "lineno", "function", "type") if k in item})
    return out


def _chain_of(value: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for exc in value[:10] if isinstance(value, list) else []:
        if isinstance(exc, dict) and all(isinstance(exc.get(k), str) for k in ("type", "qualified_type", "message")):
            out.append({"type": exc["type"], "qualified_type": exc["qualified_type"], "message": exc["message"][:500],
                        "frames": _frames_of(exc.get("frames"))})  # fmt: skip
    return out


def import_roots(tree: Path) -> list[Path]:
    """Where the service's code imports from in a tree: `src/` first for a src layout, then the root. On
    PYTHONPATH they come before site-packages, so an editable install of the service (which points at the
    user's checkout) never shadows the worktree's code."""
    return [p for p in (tree / "src", tree) if p.is_dir()]


def sandbox_env(scratch: Path, *paths: Path) -> dict[str, str]:
    """The environment of a confined run: the essentials only, with these paths importable."""
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env.update(HOME=str(scratch), PYTHONPATH=os.pathsep.join(map(str, paths)), PYTHONDONTWRITEBYTECODE="1")
    return env


@dataclass(frozen=True)
class Guard:
    """What a confined run may not touch: the user's checkout (read-only) and secrets (hidden)."""

    checkout: Path
    hidden: tuple[Path, ...] = ()
    offline: bool = True  # a network namespace with only loopback
    required: bool = True  # without namespaces nothing runs (a person may opt out: gates.require_isolation)


# Credentials a test could read by absolute path; hidden when they exist.
_HOME_SECRETS = (".ssh", ".git-credentials", ".netrc", ".pypirc", ".config/gh", ".aws", ".docker", ".kube")


def guard_for(settings: Settings) -> Guard:
    home = Path.home()
    hidden = [settings.resolved_data_dir, *(home / name for name in _HOME_SECRETS)]
    return Guard(
        checkout=settings.repo.resolve(),
        hidden=tuple(p for p in hidden if p.exists()),
        offline=settings.gates.isolate_network,
        required=settings.gates.require_isolation,
    )


# prodloop's own interpreter, run before any repository code, never reading PYTHON* variables, the user's site or
# the working directory (the run's environment points PYTHONPATH at the repository: a `sitecustomize.py` there
# would otherwise run while the mounts can still be undone).
_OWN_PYTHON = f"{shlex.quote(sys.executable)} -I -S -c"

# Makes every mount of the run's namespace read-only but the writable places given as arguments (the private
# tmpfs and the run's own tree and scratch) and /proc (the run's own): neither the host's files (the service's
# other checkouts, /etc, /usr/local, cgroup files) nor the user's git data are writable, even for a run whose
# user is root outside. The flags the kernel locks in a user namespace (nosuid, nodev, noexec, atime) are kept.
_READ_ONLY_REST = r"""
import ctypes, os, re, sys
writable = [os.fsencode(p) for p in sys.argv[1:]]
flag_of = {b"nosuid": 2, b"nodev": 4, b"noexec": 8, b"noatime": 1024, b"nodiratime": 2048,
           b"relatime": 1 << 21, b"strictatime": 1 << 24}
libc = ctypes.CDLL(None, use_errno=True)
def within(point, root):
    return point == root or point.startswith(root.rstrip(b"/") + b"/")
with open("/proc/self/mountinfo", "rb") as f:
    mounts = [line.split(b" ") for line in f.read().splitlines()]
points = [re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[4]) for fields in mounts]
for i, (fields, point) in enumerate(zip(mounts, points)):
    # A mount made later at this place or above it hides this one (it is no longer reachable by any path).
    if any(within(point, later) for later in points[i + 1:]) or any(within(point, w) for w in [b"/proc", *writable]):
        continue
    flags = 1 | 32 | 4096  # MS_RDONLY | MS_REMOUNT | MS_BIND
    for option in fields[5].split(b","):
        flags |= flag_of.get(option, 0)
    if libc.mount(b"none", point, None, flags, None) != 0:
        sys.exit(f"cannot make {os.fsdecode(point)} read-only: {os.strerror(ctypes.get_errno())}")
"""

# Brings the loopback interface of a new network namespace up (SIOCGIFFLAGS / SIOCSIFFLAGS), with no `ip` needed.
_LOOPBACK_UP = (
    "import fcntl, socket, struct; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "f = struct.unpack('16sH', fcntl.ioctl(s, 0x8913, struct.pack('16sH', b'lo', 0)))[1]; "
    "fcntl.ioctl(s, 0x8914, struct.pack('16sH', b'lo', f | 1))"
)


def confine(
    args: list[str], limits: Limits, guard: Guard | None, *, ready: Path | None = None, keep: Sequence[Path] = ()
) -> tuple[list[str], bool]:
    """Wrap the command in ulimits and, where user namespaces allow, a mount namespace in which the checkout
    is read-only and the secrets are hidden; a nested user namespace locks those mounts so that the
    command, root in the outer namespace only, cannot undo them. If any step fails nothing runs; `ready` is
    created only once every step succeeded. The flag returned says whether the run is isolated as the guard
    asks (a requested network namespace that the kernel refuses makes it False).

    The user's home directory and `/tmp` are empty private tmpfs inside the run: only the paths the run needs
    (`keep`: its tree and scratch; the checkout; the interpreter's prefixes, read from `pyvenv.cfg` without
    running it) are bound back, so no credential or other run's file is reachable by any path."""
    # CPU seconds, address space (KiB), the largest file the run may write (512-byte blocks: 1 GiB) and the
    # processes and threads of the run (counted in its own user namespace, so other runs of the user do not count).
    limit = f"ulimit -t {int(limits.cpu_seconds)}; ulimit -v {int(limits.memory_mb) * 1024}; ulimit -f 2097152; "
    run = f"exec {' '.join(_q(a) for a in args)}"
    if guard is not None and guard.required and not _namespaces_work():
        raise IsolationUnavailable()
    if guard is None or not _namespaces_work():
        return ["sh", "-c", limit + run], False
    # Since Linux 5.14 the process count is kept per user namespace: the run's own processes, not the user's.
    if _kernel_at_least(5, 14):
        limit += f"{{ ulimit -u {MAX_PROCESSES} 2>/dev/null || ulimit -p {MAX_PROCESSES}; }} || exit 97; "  # bash, dash
    inner = limit + run
    p = _q(str(guard.checkout))
    offline = guard.offline and _namespaces_work(offline=True)
    steps = [f"{_OWN_PYTHON} {_q(_LOOPBACK_UP)}"] if offline else []
    prefixes = _interpreter_prefixes(args[0])
    masked, private = _private_home_and_tmp([guard.checkout, *keep, *prefixes, *_OWN_PATHS])
    steps += private
    # The run's own tree and scratch stay writable: bound onto themselves where no private tmpfs holds them.
    own = [Path(os.path.realpath(k)) for k in keep]
    for path in own:
        if path.is_dir() and not any(path.is_relative_to(m) for m in masked):
            steps.append(f"mount --bind {_q(str(path))} {_q(str(path))}")
    steps += [f"mount --bind {p} {p}", f"mount -o remount,bind,ro {p}"]
    # The interpreters (the service's and prodloop's own) and prodloop's code are read-only: a test must not plant
    # a `.pth` file or a patched module that the host, or the next run, would execute.
    for path in dict.fromkeys([*prefixes, *_OWN_PATHS]):
        q = _q(str(path))
        steps.append(f"{{ [ ! -d {q} ] || {{ mount --bind {q} {q} && mount -o remount,bind,ro {q}; }}; }}")
    for path in guard.hidden:
        target = _q(str(path))
        mount = (
            f"mount -t tmpfs -o size=64k,mode=700 tmpfs {target}"
            if path.is_dir()
            else f"mount --bind /dev/null {target}"
        )
        steps.append(f"{{ [ ! -e {target} ] || {mount}; }}")  # gone already when it lay in the private home
    steps += _kernel_interfaces()
    writable = [str(p) for p in dict.fromkeys([*masked, *own])]
    steps.append(f"{_OWN_PYTHON} {_q(_READ_ONLY_REST)} {' '.join(_q(w) for w in writable)}")
    # The working directory was entered through the host's mounts: enter it again through the run's own, so
    # that relative paths see the run's view (and its own tree stays writable); a directory the run may not
    # see leaves it at /.
    steps.append('{ here="$(pwd -P)" && [ -n "$here" ] && cd -- "$here"; } 2>/dev/null || cd /')
    if ready is not None:
        steps.append(f": > {_q(str(ready))}")
    script = " && ".join([*steps, f"exec unshare --user --map-current-user sh -c {_q(inner)}"]) + "; exit 97"
    command = ["unshare", *_NAMESPACES, *(["--net"] if offline else []), "sh", "-c", script]
    return command, offline or not guard.offline


# A user namespace (root inside, the user outside), its own mounts, and its own PID namespace with a fresh /proc:
# every process of the run, a double-forked daemon included, dies when the run's first process ends or unshare is
# killed, and the run sees no other process of the machine.
_NAMESPACES = (
    "--user", "--map-root-user", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child", "--mount-proc"
)  # fmt: skip

# What a run whose user is root outside could change the host through, or read the kernel's memory by: /proc's
# kernel settings read-only (core_pattern would run a file of the run's on the host), its memory and key views
# hidden, and a /dev of its own with only the harmless devices (no /dev/kmsg, disks or the host's terminals).
_PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
_PROC_HIDDEN = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/kallsyms",
                "/proc/latency_stats", "/proc/acpi", "/proc/scsi")  # fmt: skip
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def _kernel_interfaces() -> list[str]:
    steps = []
    for path in _PROC_READ_ONLY:
        steps.append(f"{{ [ ! -e {path} ] || {{ mount --bind {path} {path} && mount -o remount,bind,ro {path}; }}; }}")
    for path in _PROC_HIDDEN:
        hide = (
            f"mount -t tmpfs -o size=4k,mode=500 tmpfs {path}"
            if Path(path).is_dir()
            else f"mount --bind /dev/null {path}"
        )
        steps.append(f"{{ [ ! -e {path} ] || {hide}; }}")
    stash = _q(str(_STASH))
    steps += [
        f"mount -t tmpfs -o size=64k,mode=700 tmpfs {stash}", f"mkdir {stash}/dev", f"mount --rbind /dev {stash}/dev",
        "mount -t tmpfs -o size=64k,mode=755 tmpfs /dev",
        *(f"touch /dev/{d} && mount --bind {stash}/dev/{d} /dev/{d}" for d in _DEVICES),
        "mkdir /dev/shm /dev/pts && mount -t tmpfs -o size=1g,mode=1777 tmpfs /dev/shm",
        "{ mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts && ln -s pts/ptmx /dev/ptmx || true; }",
        "ln -s /proc/self/fd /dev/fd && ln -s /proc/self/fd/0 /dev/stdin && ln -s /proc/self/fd/1 /dev/stdout"
        " && ln -s /proc/self/fd/2 /dev/stderr",
        f"umount -l {stash}",
    ]  # fmt: skip
    return steps


# World-writable places two runs could share: each run gets its own, empty.
_SHARED_TMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # noqa: S108 (masked in the sandbox, not written)
_STASH = Path("/mnt")  # a fresh tmpfs here holds the kept paths while /tmp and the home are masked


def _private_home_and_tmp(wanted: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The places masked, and the mount steps that make the home directory and /tmp empty private tmpfs, binding
    back what the run needs."""
    shared = {*_SHARED_TMP, Path(tempfile.gettempdir()).resolve()}
    # /run holds the host's Unix sockets (the user's bus, ssh and gpg agents, docker): a read-only mount does not
    # stop connect(), an empty tmpfs does.
    runtime = [Path("/run").resolve(), Path("/var/run").resolve()]
    candidates = [
        m for m in dict.fromkeys([*sorted(shared), Path.home().resolve(), *runtime]) if m != Path("/") and m.is_dir()
    ]
    # A place inside another masked place (a HOME or TMPDIR under /tmp) is already empty and private.
    masked = [m for m in candidates if not any(m != o and m.is_relative_to(o) for o in candidates)]
    if not _STASH.is_dir() or not masked:
        return [], []
    keep = []
    for path in dict.fromkeys(Path(os.path.realpath(w)) for w in wanted):
        if path.is_dir() and any(path.is_relative_to(m) for m in masked) and path not in masked:
            keep.append(path)
    stash = _q(str(_STASH))
    steps = [f"mount -t tmpfs -o size=1m,mode=700 tmpfs {stash}"]
    steps += [f"mkdir {stash}/k{i} && mount --rbind {_q(str(k))} {stash}/k{i}" for i, k in enumerate(keep)]
    steps += [f"mount -t tmpfs -o size=1g,mode={'1777' if m in shared else '700'} tmpfs {_q(str(m))}" for m in masked]
    steps += [f"mkdir -p {_q(str(k))} && mount --rbind {stash}/k{i} {_q(str(k))}" for i, k in enumerate(keep)]
    steps.append(f"umount -l {stash}")  # the stash would reach the kept paths by a second, writable route
    return masked, steps


def _interpreter_prefixes(python: str) -> list[Path]:
    """Where an interpreter's files live, read from its venv's `pyvenv.cfg`: never by running a binary that a
    repository could have put there. The file and the symlink may come from a stranger's branch, so only a
    directory that looks like a Python installation is taken, and never the home directory, one of its
    credential folders, or a folder holding one."""
    exe = Path(python)
    out = [exe.parent.parent, Path(os.path.realpath(exe)).parent.parent]
    cfg = exe.parent.parent / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                out.append(Path(value.strip()).parent)
    home = Path.home().resolve()
    secrets = [home / name for name in _HOME_SECRETS]
    return [
        p
        for p in dict.fromkeys(Path(os.path.realpath(o)) for o in out)
        if p.is_dir()
        and (p / "lib").is_dir()
        and p != home
        and not any(p.is_relative_to(s) or s.is_relative_to(p) for s in secrets)
    ]


# prodloop's own interpreter and code (an editable install's source tree included): read-only in every run.
_OWN_PATHS = tuple(
    dict.fromkeys(Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix, Path(__file__).parents[2]))
)


_NS_CACHE: dict[tuple[bool, str | None], bool] = {}


def _namespaces_work(*, offline: bool = False) -> bool:
    """Whether this kernel lets us bind, remount read-only and lock mounts in user namespaces (and, offline,
    give the run its own network namespace); probed once each."""
    key = (offline, shutil.which("unshare"))  # probed again when PATH finds another unshare, or none
    if key not in _NS_CACHE:
        probe = Path(tempfile.mkdtemp(prefix="prodloop-ns-"))
        p = _q(str(probe))
        script = f"mount --bind {p} {p} && mount -o remount,bind,ro {p} && exec unshare --user --map-current-user true"
        if offline:
            script = f"{_OWN_PYTHON} {_q(_LOOPBACK_UP)} && {script}"
        command = ["unshare", *_NAMESPACES, *(["--net"] if offline else []), "sh", "-c"]
        try:
            done = subprocess.run([*command, script], capture_output=True, timeout=10)
            _NS_CACHE[key] = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _NS_CACHE[key] = False
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    return _NS_CACHE[key]


def _kernel_at_least(major: int, minor: int) -> bool:
    found = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return found is not None and (int(found[1]), int(found[2])) >= (major, minor)


def tail_of(handle: IO[bytes], chars: int) -> str:
    """The last `chars` characters written through `handle` (a file opened w+b)."""
    handle.flush()
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - 4 * chars))
    return handle.read().decode("utf-8", errors="replace")[-chars:]


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int | None, float, bool]:
    """Wait with rusage (CPU seconds of the run); on timeout stop every process of the run (`stop_all`)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime, False
        if time.monotonic() > deadline:
            stop_all(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return None, usage.ru_utime + usage.ru_stime, True
        time.sleep(0.01)


def stop_all(leader: int, *, grace_seconds: float = 5.0) -> None:
    """SIGKILL a run's process group and every descendant of its leader (a mutant's worker may be in a session of
    its own; the PID namespace tears down asynchronously), then wait until none of them is still running."""
    family = _descendants(leader)
    try:
        os.killpg(leader, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace_seconds
    while any(_running(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.02)


def _descendants(leader: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: set[int] = set()
    frontier = {leader}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def isolation_available(*, offline: bool = False) -> bool:
    """Whether runs can be confined here (mount namespace with a read-only checkout; `offline`: own network)."""
    return _namespaces_work(offline=offline)
