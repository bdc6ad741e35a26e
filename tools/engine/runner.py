"""`Runner`: how every confined run starts, built once from settings.

The service's interpreter, the gates' limits and the isolation the settings ask for are decided in one
place; callers say what to run (`pytest`, `script`, `start` for a process whose output is streamed) and
get what happened. A bench or a test that wants to observe runs wraps a `Runner` (a subclass) and hands
it to the `AppContext`, instead of patching module functions.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from prodloop.server.settings import Settings, service_python
from prodloop.tools.engine.sandbox import (
    Guard,
    Limits,
    RunResult,
    Workspace,
    confine,
    guard_for,
    import_roots,
    run_pytest,
    sandbox_env,
    tail_of,
    wait,
)


@dataclass(frozen=True)
class ScriptRun:
    exit_code: int | None  # None: stopped at the timeout
    output: str
    timed_out: bool
    cpu_seconds: float


@dataclass(frozen=True)
class Runner:
    python: Path
    limits: Limits
    guard: Guard | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Runner:
        gates = settings.gates
        limits = Limits(
            timeout_seconds=gates.timeout_seconds,
            cpu_seconds=int(gates.timeout_seconds) + 5,
            memory_mb=gates.memory_mb,
        )
        return cls(python=service_python(settings), limits=limits, guard=guard_for(settings))

    def scaled(self, factor: float) -> Limits:
        """The limits for a run of `factor` test runs (the mutation driver runs the tests once per mutant)."""
        return replace(
            self.limits,
            timeout_seconds=self.limits.timeout_seconds * factor,
            cpu_seconds=int(self.limits.cpu_seconds * factor),
        )

    def pytest(self, ws: Workspace, targets: Sequence[str], **options: Any) -> RunResult:
        """pytest on `targets` in the workspace, with prodloop's probe (see `sandbox.run_pytest` for options)."""
        return run_pytest(ws, self.python, targets, self.limits, guard=self.guard, **options)

    def start(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        keep: Sequence[Path],
        scratch: Path,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[subprocess.Popen[bytes], Limits]:
        """Start the service's interpreter with `args` in the sandbox, in a session of its own; wait for it with
        `sandbox.wait` (which stops every process of the run at the limits' timeout)."""
        limits = limits or self.limits
        command, _ = confine([str(self.python), *args], limits, self.guard, keep=[*keep, scratch])
        environment = {**sandbox_env(scratch, *import_roots(cwd)), **(env or {})}
        proc = subprocess.Popen(
            command, cwd=cwd, env=environment, stdout=stdout, stderr=stderr, start_new_session=True
        )  # fmt: skip
        return proc, limits

    def script(
        self, args: Sequence[str], *, cwd: Path, keep: Sequence[Path] = (), limits: Limits | None = None
    ) -> ScriptRun:
        """Run the service's interpreter with `args` (a script and its arguments, or `-c CODE`) to its end in the
        sandbox; its output (stdout and stderr) is returned."""
        scratch = Path(tempfile.mkdtemp(prefix="prodloop-script-"))
        try:
            # Read back through the writing handle: the run may swap the file's name for a symlink to a host file.
            with open(scratch / "out.txt", "w+b") as out:
                proc, used = self.start(
                    args, cwd=cwd, keep=keep, scratch=scratch, stdout=out, stderr=subprocess.STDOUT,
                    limits=limits,
                )  # fmt: skip
                code, cpu, timed_out = wait(proc, used.timeout_seconds)
                output = tail_of(out, 2_000_000)
            return ScriptRun(code, output, timed_out, cpu)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
