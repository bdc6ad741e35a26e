"""Real sentry-sdk events from real code, for tests and benches alike: one script runs the code (a file, or a
module's text compiled under a name) in a fresh interpreter with `sentry_sdk.init(...)` as a service would call
it, an in-memory transport keeps what the SDK would send, and the events come back as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_CAPTURE = textwrap.dedent(
    """
    import json, runpy, sys
    import sentry_sdk
    from sentry_sdk.transport import Transport

    out_path, release, in_app, kind, target = sys.argv[1:6]
    events = []

    class Capture(Transport):
        def capture_envelope(self, envelope):
            events.extend(json.loads(i.get_bytes()) for i in envelope.items if i.type == "event")

        def flush(self, timeout, callback=None):
            pass

    sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=Capture, release=release or None,
                    environment="production", include_local_variables=True,
                    in_app_include=[in_app] if in_app else [])
    try:
        if kind == "file":
            runpy.run_path(target, run_name="__main__")
        else:
            exec(compile(target, "<request>", "exec"), {"__name__": "request"})
    except BaseException:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()
    with open(out_path, "w") as fh:
        json.dump(events, fh)
    """
)


def capture_events(
    *,
    cwd: Path,
    pythonpath: Sequence[Path],
    script: Path | None = None,
    code: str | None = None,
    release: str = "",
    in_app: str = "",
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> list[dict[str, Any]]:
    """The events a real sentry-sdk reports while running `script` (a file) or `code` (text) in `cwd`."""
    if (script is None) == (code is None):
        raise ValueError("give a script or code")
    with tempfile.TemporaryDirectory(prefix="prodloop-capture-") as tmp:
        runner, out = Path(tmp) / "capture.py", Path(tmp) / "events.json"
        runner.write_text(_CAPTURE)
        kind, target = ("file", str(script)) if script is not None else ("code", textwrap.dedent(code or ""))
        base = dict(os.environ if env is None else env)
        subprocess.run(
            [sys.executable, str(runner), str(out), release, in_app, kind, target],
            cwd=cwd, env={**base, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}, check=True,
            capture_output=True, timeout=timeout,
        )  # fmt: skip
        events: list[dict[str, Any]] = json.loads(out.read_text())
    return events
