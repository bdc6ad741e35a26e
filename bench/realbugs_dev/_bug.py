"""One bug of the set: its `bug.toml`, read and checked, and the rules that compare prodloop's answers with it."""

from __future__ import annotations

import ast
import re
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

_SHA = re.compile(r"[0-9a-f]{40}")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_TEST_DIRS = frozenset({"test", "tests", "testing"})


class BugError(Exception):
    """A bug folder that cannot be run as written."""


@dataclass(frozen=True)
class Fault:
    path: str
    qualname: str

    def __str__(self) -> str:
        return f"{self.path}::{self.qualname}"


@dataclass(frozen=True)
class Bug:
    name: str
    folder: Path
    project: str
    repo: str
    buggy_commit: str
    fixed_commit: str
    requirements: tuple[str, ...]
    test_requirements: tuple[str, ...]
    install_project: str
    regression_test: str
    exception: str
    faults: tuple[Fault, ...]
    notes: str

    @property
    def trigger(self) -> Path:
        return self.folder / "trigger.py"

    @property
    def regression_file(self) -> str:
        return self.regression_test.split("::", 1)[0]

    @property
    def regression_name(self) -> str:
        """The part of the node id after the file ("Class::method" or "func"), parameters dropped."""
        rest = self.regression_test.split("::", 1)[1] if "::" in self.regression_test else ""
        return re.sub(r"\[.*\]$", "", rest)


def load_bug(folder: Path) -> Bug:
    path = folder / "bug.toml"
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BugError(f"{path} cannot be read: {exc}") from exc

    def text(key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value or (pattern is not None and not pattern.fullmatch(value)):
            raise BugError(f"{path}: `{key}` is missing or malformed ({str(value)[:60]!r})")
        return value

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BugError(f"{path}: `{key}` must be a list of strings")
        return tuple(value)

    faults = []
    for item in strings("fault"):
        file, sep, qualname = item.partition("::")
        if not sep or not file or not qualname:
            raise BugError(f"{path}: fault {item!r} is not file::Qualified.name")
        faults.append(Fault(file.removeprefix("./"), qualname))
    install = data.get("install_project", "none")
    if install not in ("editable", "none"):
        raise BugError(f"{path}: install_project must be 'editable' or 'none', not {install!r}")
    if not (folder / "trigger.py").is_file():
        raise BugError(f"{folder}: trigger.py is missing")
    return Bug(
        name=folder.name, folder=folder, project=text("project"), repo=text("repo", _REPO),
        buggy_commit=text("buggy_commit", _SHA), fixed_commit=text("fixed_commit", _SHA),
        requirements=strings("requirements"), test_requirements=strings("test_requirements"),
        install_project=install, regression_test=text("regression_test"), exception=text("exception"),
        faults=tuple(faults), notes=str(data.get("notes", ""))[:300],
    )  # fmt: skip


def discover(bugs_dir: Path, only: list[str] | None) -> tuple[list[Bug], list[str]]:
    """The bugs to run, sorted by name, and one line per folder that could not be read or name not found."""
    problems: list[str] = []
    folders = (
        sorted(p for p in bugs_dir.iterdir() if p.is_dir() and (p / "bug.toml").exists()) if bugs_dir.is_dir() else []
    )
    if only:
        known = {p.name for p in folders}
        problems += [f"{name}: no such bug in {bugs_dir}" for name in only if name not in known]
        folders = [p for p in folders if p.name in only]
    bugs = []
    for folder in folders:
        try:
            bugs.append(load_bug(folder))
        except BugError as exc:
            problems.append(f"{folder.name}: {exc}")
    return bugs, problems


def is_test_path(path: str) -> bool:
    """Whether a changed file belongs to the tests: a `test`/`tests`/`testing` directory, a test module name,
    a conftest, or a top-level entry named test* (what `:(exclude)test*` leaves out)."""
    parts = PurePosixPath(path).parts
    name = parts[-1] if parts else path
    return (
        any(p in _TEST_DIRS for p in parts[:-1])
        or (name.startswith("test_") and name.endswith(".py"))
        or name.endswith("_test.py")
        or name == "conftest.py"
        or (len(parts) >= 1 and parts[0].startswith("test"))
    )


def matches(fault: Fault, path: str | None, qualname: str | None, fault_is_function: bool) -> bool:
    """A candidate names the fault when the file is the same and the qualified name is equal; a function
    nested in the fault function counts too (a method of a class must match exactly)."""
    if not path or not qualname or path.removeprefix("./") != fault.path:
        return False
    return qualname == fault.qualname or (fault_is_function and qualname.startswith(fault.qualname + "."))


def candidate_key(item: object) -> tuple[str | None, str | None]:
    """(repo path, qualname) of one entry of a ranked candidate list, whatever shape prodloop gives it."""
    if isinstance(item, str):
        path, _, qual = item.partition("::")
        return path or None, qual or None
    if hasattr(item, "model_dump"):
        item = item.model_dump()
    if isinstance(item, dict):
        for key in ("label", "frame", "function_id", "id"):
            if isinstance(item.get(key), str) and "::" in item[key]:
                return candidate_key(item[key])
        location = item.get("location") if isinstance(item.get("location"), dict) else {}
        path = item.get("repo_path") or item.get("path") or item.get("file") or location.get("repo_path")
        qual = item.get("qualname") or item.get("function") or item.get("name")
        return (path if isinstance(path, str) else None), (qual if isinstance(qual, str) else None)
    return None, None


SERVICE_MODULE = "prodloop_dev_service"


def split_trigger(source: str) -> tuple[str, str]:
    """Module mode: (the trigger's definitions as a module of the service, the script that runs its batch).

    The module holds the trigger's imports and everything between `sentry_sdk.init(...)` and the batch (the
    `if __name__ == "__main__":` block, else the statements from `last_error = None` on); the script is the
    trigger's head (imports and `sentry_sdk.init`), the module's names, then the batch."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    body = tree.body
    init = next((i for i, node in enumerate(body) if _is_sentry_init(node)), None)
    if init is None:
        raise BugError("the trigger has no top-level sentry_sdk.init(...) call")
    main = next((i for i, node in enumerate(body) if _is_main_block(node)), None)
    if main is not None:
        block = body[main]
        assert isinstance(block, ast.If)
        batch = textwrap.dedent("".join(lines[block.body[0].lineno - 1 : block.end_lineno]))
    else:
        main = next((i for i, node in enumerate(body) if i > init and _is_last_error(node)), None)
        if main is None:
            raise BugError("the trigger's batch (a main block, or `last_error = None` onward) was not found")
        batch = "".join(lines[body[main].lineno - 1 :])
    imports = [
        ast.get_source_segment(source, node) or ""
        for node in body[:init]
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    definitions = "".join(lines[body[init].end_lineno or 0 : body[main].lineno - 1])
    module = (
        '"""Service code of the real-bug set, run in module mode (from trigger.py)."""\n\n'
        + "\n".join(imports)
        + "\n"
        + definitions
    )
    head = "".join(lines[: body[init].end_lineno or 0])
    script = (
        f"{head}\nimport {SERVICE_MODULE} as _service\n\n"
        "globals().update({k: v for k, v in vars(_service).items() if not k.startswith('__')})\n\n" + batch
    )
    return module, script


def _is_sentry_init(node: ast.stmt) -> bool:
    call = node.value if isinstance(node, ast.Expr) else None
    func = call.func if isinstance(call, ast.Call) else None
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "init"
        and isinstance(func.value, ast.Name)
        and func.value.id == "sentry_sdk"
    )


def _is_main_block(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.dump(node.test) and "__name__" in ast.dump(node.test)


def _is_last_error(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "last_error" for t in node.targets)
