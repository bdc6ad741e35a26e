"""The `hermetic` gate: a regression test may exercise the service, never the process or the harness around it.

Read from the test's source before anything runs (a test that fails this gate is never run). What the
candidate runs is checked: its body and decorators, its class's non-test members, every module-level
fixture (an autouse fixture runs unasked), module-level helpers any of those reach, and module-level
statements, decorators, default values and class bodies anywhere in the file (they run at collection).
Other tests of the same file, and what only they use, are not the candidate's concern.

Allowed: the service's modules and any other third-party or repository module, pytest's public API,
and the standard library's harmless modules (`_HARMLESS`). Refused, each with its line:
- standard-library modules that reach the process, the interpreter or the harness (`os`, `sys`,
  `subprocess`, `ctypes`, `importlib`, `builtins`, `gc`, `inspect`, `signal`, `threading`, `socket`,
  `shutil`, `tempfile`, ...), pytest's internals (`_pytest`, `pluggy`), and the same names imported
  from anywhere else (`from somewhere import os`);
- `exec`, `eval`, `compile`, `__import__`, `globals`, `locals`, `vars`, `breakpoint`, `input`, and
  `getattr`/`setattr`/`delattr`/`hasattr` with a computed or dunder name;
- dunder and frame walks (`__globals__`, `__subclasses__`, `__builtins__`, `__code__`, `f_back`,
  `tb_frame`, ...) and the process's or harness's handles by attribute (`environ`, `system`, `Popen`,
  `fork`, `kill`, `settrace`, `modules`, `pluginmanager`, `hook`, `stash`);
- file writes (`open` with a writing mode, `Path.write_text`, `mkdir`, `unlink`, ...) anywhere but
  under pytest's `tmp_path` / `tmp_path_factory` / `tmpdir`;
- `pytest_plugins` (loads code the gate never read);
- support files that are code pytest would load, and a test that imports a support file
  (`support_file_findings`): support files are data.
This judges a cooperative agent's test strictly; a hostile test cannot talk its way past it, and the
sandbox contains what a static check could miss.
"""

from __future__ import annotations

import ast
import sys

from prodloop.tools.judge.test_checks import Finding, find_test, is_test_module
from prodloop.tools.locate.source_map import module_of

# Standard-library modules a regression test may import: values, data formats, text, time, asyncio to run
# coroutines, unittest (TestCase and mock) — nothing that reaches the process, the interpreter or the harness.
_HARMLESS = frozenset(
    """
    abc array ast asyncio base64 binascii bisect calendar cmath codecs collections colorsys contextlib copy csv
    dataclasses datetime decimal difflib email enum fractions functools graphlib hashlib heapq hmac html io
    ipaddress itertools json keyword locale logging math mimetypes numbers operator pathlib pprint queue random
    re reprlib secrets shlex statistics string stringprep struct textwrap time timeit tokenize token tomllib
    traceback typing unicodedata unittest urllib uuid warnings weakref xml zlib zoneinfo concurrent __future__
    """.split()
)
# Harness internals, also refused when installed: pytest's private package and its plugin machinery.
_HARNESS = frozenset({"_pytest", "pluggy", "py", "xdist", "coverage", "pytest_cov"})
_DANGEROUS_IMPORTS = frozenset(
    """
    posix nt subprocess ctypes importlib builtins gc inspect signal threading _thread multiprocessing socket
    socketserver ssl select selectors shutil tempfile pty tty fcntl termios resource mmap
    marshal pickle shelve dbm code codeop runpy pdb bdb trace tracemalloc faulthandler atexit sysconfig site
    platform pwd grp cffi sched types dis glob fileinput zipimport zipfile tarfile pkgutil webbrowser http ftplib
    smtplib telnetlib imaplib poplib
    """.split()
)
_EVAL_BUILTINS = frozenset(
    {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint", "input", "memoryview"}
)
_ATTRIBUTE_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
_WALKS = frozenset(
    """
    __globals__ __builtins__ __subclasses__ __bases__ __base__ __mro__ __code__ __closure__ __import__ __loader__
    __spec__ __getattribute__ __reduce__ __reduce_ex__ __dict__ __func__ __self__ __module__ __defaults__
    __kwdefaults__ gi_frame gi_code cr_frame cr_code ag_frame ag_code f_back f_globals f_locals f_builtins f_code
    tb_frame tb_next co_code co_consts
    """.split()
)
_HANDLES = frozenset(
    """
    environ environb getenv putenv unsetenv system popen Popen spawnl spawnv spawnve posix_spawn startfile fork
    forkpty execl execle execlp execv execve execvp kill killpg _exit settrace setprofile modules path_hooks
    meta_path pluginmanager hook stash _store config_stash os sys subprocess create_subprocess_exec
    create_subprocess_shell open_connection open_unix_connection start_server start_unix_server ProcessPoolExecutor
    FileHandler RotatingFileHandler TimedRotatingFileHandler WatchedFileHandler basicConfig
    """.split()
)
_WRITERS = frozenset(
    """
    write_text write_bytes touch mkdir makedirs unlink rmdir symlink_to hardlink_to link_to chmod lchmod chown
    removedirs rmtree
    """.split()
)
# Modules a test may import for their pure parts only: every use must be one of these attributes.
_PURE_PARTS = {
    "os": frozenset({"path", "sep", "linesep", "pathsep", "curdir", "pardir", "extsep", "altsep", "name", "fspath",
                     "getcwd", "devnull", "fsencode", "fsdecode"}),
    "sys": frozenset({"version_info", "version", "platform", "maxsize", "byteorder", "stdout", "stderr",
                      "float_info", "int_info", "hexversion", "implementation", "maxunicode", "getrecursionlimit"}),
}  # fmt: skip
_TMP_FIXTURES = frozenset({"tmp_path", "tmp_path_factory", "tmpdir", "tmpdir_factory"})
_PATCHERS = frozenset({"patch", "object", "dict", "setattr", "setitem", "delattr", "delitem"})
# Submodules of harmless packages that still reach the network or the harness.
_DENIED_SUBMODULES = frozenset({"urllib.request", "urllib.robotparser", "logging.config"})


def hermetic_findings(tree: ast.Module, test_name: str) -> list[Finding]:
    """What the candidate runs that reaches the process, the interpreter or the harness (empty: hermetic)."""
    spans, module_level = _scope(tree, test_name)
    at_import = _import_time(tree)
    executed = [*module_level, *at_import, *(s for s, _ in spans)]
    used = {n.id for node in executed for n in ast.walk(node) if isinstance(n, ast.Name)}
    # Names bound to os / sys (whose pure parts a test may use), anywhere in the file.
    modules = {
        alias.asname or alias.name: alias.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for alias in n.names
        if alias.name.split(".")[0] in _PURE_PARTS and (alias.asname is None or "." not in alias.name)
    }
    out: list[Finding] = []
    for statement in module_level:
        out += _check(statement, used, modules, tmp_names=set(), imports_by_use=True)
    for definition, _ in spans:
        out += _check(definition, used, modules, tmp_names=_tmp_names(definition), imports_by_use=False)
    for expression in at_import:
        out += _check(expression, used, modules, tmp_names=set(), imports_by_use=False)
    unique = {(f.line, f.problem): f for f in out}
    return sorted(unique.values(), key=lambda f: f.line)


def _scope(tree: ast.Module, test_name: str) -> tuple[list[tuple[ast.AST, str]], list[ast.stmt]]:
    """(the definitions the candidate runs, with their names; the module-level statements that run at import)."""
    fn = find_test(tree, test_name)
    cls_name = test_name.rpartition("::")[0]
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    module_level = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    todo: list[ast.AST] = [fn, *fn.decorator_list]
    cls = defs.get(cls_name) if cls_name else None
    if isinstance(cls, ast.ClassDef):
        todo += [n for n in cls.body if not (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_test(n))]
        todo += [*cls.bases, *cls.decorator_list]
    todo += [d for d in defs.values() if _is_fixture(d)]
    seen: set[int] = set()
    out: list[tuple[ast.AST, str]] = []
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append((node, getattr(node, "name", "")))
        for n in ast.walk(node):
            name = n.id if isinstance(n, ast.Name) else n.arg if isinstance(n, ast.arg) else None
            target = defs.get(name) if name else None
            if target is not None and target is not fn and target is not cls and id(target) not in seen:
                todo.append(target)
    return out, module_level


_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _import_time(tree: ast.Module) -> list[ast.AST]:
    """What runs when the module is imported, inside definitions of any test: decorators and default values of
    every function, and bases, keywords and body statements of every class (nested ones too)."""
    out: list[ast.AST] = []
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    todo: list[_Definition] = [n for n in tree.body if isinstance(n, definitions)]
    while todo:
        node = todo.pop()
        out += node.decorator_list
        if isinstance(node, ast.ClassDef):
            out += [*node.bases, *(k.value for k in node.keywords)]
            for child in node.body:
                if isinstance(child, definitions):
                    todo.append(child)
                else:
                    out.append(child)
        else:
            out += [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
    return out


def _is_test(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return node.name.startswith("test")


def _is_fixture(node: ast.stmt) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any("fixture" in ast.unparse(d) for d in decorators)


def _tmp_names(scope: ast.AST) -> set[str]:
    """pytest's temporary-directory fixtures, and local names built from them (`out = tmp_path / "x"`)."""
    names = set(_TMP_FIXTURES)
    changed = True
    while changed:
        changed = False
        for n in ast.walk(scope):
            if isinstance(n, ast.Assign):
                value, targets = n.value, n.targets
            elif isinstance(n, (ast.AnnAssign, ast.NamedExpr)) and n.value is not None:
                value, targets = n.value, [n.target]
            elif isinstance(n, (ast.With, ast.AsyncWith)):
                for item in n.items:
                    if item.optional_vars is not None and _root(item.context_expr) in names:
                        names.update(x.id for x in ast.walk(item.optional_vars) if isinstance(x, ast.Name))
                continue
            else:
                continue
            if _root(value) not in names:
                continue
            for t in targets:
                for name in (x.id for x in ast.walk(t) if isinstance(x, ast.Name)):
                    if name not in names:
                        names.add(name)
                        changed = True
    return names


def _check(
    node: ast.AST, used: set[str], modules: dict[str, str], *, tmp_names: set[str], imports_by_use: bool
) -> list[Finding]:
    out: list[Finding] = []
    parents = {id(child): parent for parent in ast.walk(node) for child in ast.iter_child_nodes(parent)}

    def refuse(at: ast.AST, problem: str) -> None:
        out.append(Finding(line=getattr(at, "lineno", 0), problem=problem))

    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            for alias in n.names:
                bound = alias.asname or alias.name.split(".")[0]
                pure = alias.name.split(".")[0] in _PURE_PARTS and (alias.asname is None or "." not in alias.name)
                if (not imports_by_use or bound in used) and not pure and not _importable(alias.name):
                    refuse(n, f"imports {alias.name}, which reaches the process or the harness")
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            bound_names = {a.asname or a.name for a in n.names}
            if imports_by_use and not bound_names & used:
                continue
            top = n.module.split(".")[0]
            for alias in n.names:
                if top in _PURE_PARTS:
                    if n.module not in ("os.path", "posixpath") and alias.name not in _PURE_PARTS[top]:
                        refuse(n, f"imports {alias.name} from {n.module}, which reaches the process or the harness")
                    continue
                dangerous = alias.name in _DANGEROUS_IMPORTS or alias.name in _HANDLES or alias.name in _EVAL_BUILTINS
                if not _importable(n.module):
                    refuse(n, f"imports from {n.module}, which reaches the process or the harness")
                elif dangerous or not _importable(f"{n.module}.{alias.name}"):
                    refuse(n, f"imports {alias.name} from {n.module}")
        elif isinstance(n, ast.Call):
            problem = _call_problem(n, tmp_names)
            if problem:
                refuse(n, problem)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules:
            module = modules[n.value.id]
            if n.attr == "environ" or n.attr == "getenv":
                if not _named_lookup(n, parents):
                    refuse(n, f"reaches {module}.{n.attr} beyond reading one named variable")
            elif n.attr not in _PURE_PARTS[module]:
                refuse(n, f"reaches {module}.{n.attr}")
        elif isinstance(n, ast.Attribute) and (n.attr in _WALKS or n.attr in _HANDLES):
            if not (n.attr == "environ" and _named_lookup(n, parents)):
                refuse(n, f"reaches .{n.attr}")
        elif isinstance(n, ast.Name) and n.id in ("__builtins__", "__loader__", "__spec__", "__import__"):
            refuse(n, f"uses {n.id}")
        elif isinstance(n, ast.Name) and n.id in modules and not isinstance(parents.get(id(n)), ast.Attribute):
            refuse(n, f"passes the {modules[n.id]} module around")
        elif isinstance(n, (ast.Assign, ast.AnnAssign)) and imports_by_use:
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            if any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in targets):
                refuse(n, "loads pytest plugins (pytest_plugins), code this gate never read")
    return out


def _call_problem(call: ast.Call, tmp_names: set[str]) -> str | None:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else None
    first = call.args[0] if call.args else None
    if name in _EVAL_BUILTINS:
        return f"calls {name}()"
    if name in _ATTRIBUTE_BUILTINS:
        attribute = call.args[1] if len(call.args) > 1 else None
        if not (isinstance(attribute, ast.Constant) and isinstance(attribute.value, str)):
            return f"calls {name}() with a computed attribute name"
        if attribute.value.startswith("__") or attribute.value in _WALKS or attribute.value in _HANDLES:
            return f"calls {name}() on {attribute.value}"
        return None
    if name == "open" or (isinstance(func, ast.Attribute) and func.attr == "open"):
        # open(path, mode), io.open / codecs.open(path, mode), Path(...).open(mode)
        by_path = name == "open" or _root(func) in ("io", "codecs")
        at = 1 if by_path else 0
        if not by_path and isinstance(func, ast.Attribute):
            first = func.value
        mode = call.args[at] if len(call.args) > at else next((k.value for k in call.keywords if k.arg == "mode"), None)
        writing = mode is not None and not (isinstance(mode, ast.Constant) and isinstance(mode.value, str))
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
            writing = any(c in mode.value for c in "wax+")
        return "opens a file for writing outside tmp_path" if writing and _root(first) not in tmp_names else None
    if isinstance(func, ast.Attribute) and func.attr in _WRITERS and _root(func.value) not in tmp_names:
        return f"writes files outside tmp_path (.{func.attr})"
    patching = (isinstance(func, ast.Attribute) and func.attr in _PATCHERS) or name == "patch"
    if patching and isinstance(first, ast.Constant) and isinstance(first.value, str) and "." in first.value:
        if not _importable(first.value.rsplit(".", 1)[0]):
            return f"patches {first.value}, part of the process or the harness"
    return None


def _named_lookup(attribute: ast.Attribute, parents: dict[int, ast.AST]) -> bool:
    """`os.environ.get("NAME")`, `os.environ["NAME"]` (read) or `os.getenv("NAME")`: one variable, by a literal name."""
    parent = parents.get(id(attribute))
    if attribute.attr == "getenv":
        call = parent
    elif isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Load):
        return isinstance(parent.slice, ast.Constant) and isinstance(parent.slice.value, str)
    elif isinstance(parent, ast.Attribute) and parent.attr == "get":
        call = parents.get(id(parent))
    else:
        return False
    return (
        isinstance(call, ast.Call)
        and bool(call.args)
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    )


def _importable(module: str) -> bool:
    if any(module == d or module.startswith(d + ".") for d in _DENIED_SUBMODULES):
        return False
    top = module.split(".")[0]
    if top in _HARNESS or top in _DANGEROUS_IMPORTS:
        return False
    if top in sys.stdlib_module_names:
        return top in _HARMLESS
    return True


def _root(node: ast.AST | None) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript, ast.BinOp)):
        if isinstance(node, ast.BinOp):
            node = node.left
        else:
            node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def support_file_findings(files: dict[str, str] | None, tree: ast.Module) -> list[Finding]:
    """Support files are data. A file pytest would load on its own (conftest, test modules, configuration, `.pth`)
    is refused, and so is a test that imports a support file: that would run code no gate read."""
    out: list[Finding] = []
    modules = {}
    for path in files or {}:
        name = path.rsplit("/", 1)[-1]
        loaded = name in _PYTEST_FILES or name.endswith((".pyc", ".pth", ".pyi")) or name == "__init__.py"
        if loaded or is_test_module(path) or (name.endswith(".py") and name.startswith("test")):
            out.append(Finding(line=0, problem=f"support file {path} is code pytest would load, not data"))
        elif name.endswith(".py"):
            modules[module_of(path)] = path
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in modules or any(m.endswith("." + name) for m in modules):
                out.append(Finding(line=node.lineno, problem=f"imports {name}, a support file (data, never code)"))
    return out


_PYTEST_FILES = frozenset({"conftest.py", "pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini"})
