"""The results as one table (bugs × stages and gates), the totals per column, the issue's bar, and per bug the
first stage that failed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from _record import STAGES, short

OK, FAIL, SKIP = "✓", "✗", "–"
_GATE_ABBR = {
    "hermetic": "her",
    "reproduces": "rep", "passes_with_fix": "fix", "not_flaky": "flk", "covers_path": "cov",
    "public_interface": "pub", "real_assertion": "ast", "fast": "fst",
}  # fmt: skip


@dataclass(frozen=True)
class Column:
    name: str
    cell: Callable[[dict[str, Any]], tuple[str, bool | None]]  # (text, counted as passed / failed / not run)


def _stage(result: dict[str, Any], name: str) -> dict[str, Any]:
    got: dict[str, Any] = result["stages"].get(name) or {"status": "skip", "data": {}}
    return got


def _status_cell(name: str) -> Callable[[dict[str, Any]], tuple[str, bool | None]]:
    def cell(result: dict[str, Any]) -> tuple[str, bool | None]:
        status = _stage(result, name)["status"]
        return {"ok": (OK, True), "fail": (FAIL, False)}.get(status, (SKIP, None))

    return cell


def _gate_cell(stage: str, gate: str) -> Callable[[dict[str, Any]], tuple[str, bool | None]]:
    def cell(result: dict[str, Any]) -> tuple[str, bool | None]:
        value = (_stage(result, stage).get("data") or {}).get("gates", {}).get(gate)
        return (OK, True) if value is True else (FAIL, False) if value is False else (SKIP, None)

    return cell


def _mutation_cell(stage: str) -> Callable[[dict[str, Any]], tuple[str, bool | None]]:
    def cell(result: dict[str, Any]) -> tuple[str, bool | None]:
        data = _stage(result, stage).get("data") or {}
        score = data.get("mutation_score")
        if stage == "loop":
            step = next((s for s in data.get("steps", []) if s.get("name") == "mutate_validate"), None)
            passed = step.get("ok") if step else None
        else:
            passed = data.get("mutation_passed")
        if score is None:
            return (FAIL, False) if passed is False or data.get("mutation_error") else (SKIP, None)
        return f"{score:.2f}", bool(passed)

    return cell


COLUMNS = [
    *(Column(n, _status_cell(n)) for n in ("release", "top1", "top3", "synth", "repro")),
    *(Column(f"s:{a}", _gate_cell("loop", g)) for g, a in _GATE_ABBR.items()),
    Column("s:mut", _mutation_cell("loop")),
    Column("PR", _status_cell("loop")),
    *(Column(f"o:{a}", _gate_cell("own", g)) for g, a in _GATE_ABBR.items()),
    Column("o:mut", _mutation_cell("own")),
]
LEGEND = (
    "s: the synthesized test in the headless loop; o: the project's own regression test; gates "
    + ", ".join(f"{a} {g}" for g, a in _GATE_ABBR.items())
    + "; mut mutation score (counted when it passes prodloop's minimum); PR a prodloop/ branch pushed to origin"
)

BARS = [
    ("synthesized test reproduces with the true input and passes at fixed", 0.60, lambda r: _ok(r, "repro")),
    ("PR pushed headless", 0.50, lambda r: _ok(r, "loop")),
    ("own regression test passes every gate and mutation", 0.90, lambda r: _ok(r, "own")),
    ("culprit top-3", 0.90, lambda r: _ok(r, "top3")),
]


def _ok(result: dict[str, Any], stage: str) -> bool:
    return bool(_stage(result, stage)["status"] == "ok")


def _pct(n: int, total: int) -> str:
    return f"{n}/{total} ({100 * n / total:.0f}%)" if total else "0/0"


def render(results: list[dict[str, Any]]) -> str:
    names = [r["bug"] for r in results]
    rows = [[c.cell(r)[0] for c in COLUMNS] for r in results]
    widths = [max([len("bug"), *map(len, names)])] + [
        max(len(c.name), *(len(row[i]) for row in rows)) if rows else len(c.name) for i, c in enumerate(COLUMNS)
    ]
    lines = [_row(["bug", *(c.name for c in COLUMNS)], widths), _row(["-" * w for w in widths], widths)]
    lines += [_row([name, *row], widths) for name, row in zip(names, rows, strict=True)]
    lines += ["", LEGEND, "", "Totals (passed / bugs):"]
    lines += _wrap(f"{c.name} {_pct(sum(1 for r in results if c.cell(r)[1]), len(results))}" for c in COLUMNS)
    lines += ["", "The bar:"]
    for label, bar, passed in BARS:
        n = sum(1 for r in results if passed(r))
        met = bool(results) and n / len(results) >= bar
        lines.append(f"  {OK if met else FAIL} {label}: {_pct(n, len(results))}, needs >= {bar:.0%}")
    lines += ["", "First failing stage per bug:"]
    lines += [f"  {r['bug']}: {first_failure(r)}" for r in results]
    return "\n".join(lines)


def first_failure(result: dict[str, Any]) -> str:
    for name in STAGES:
        stage = result["stages"].get(name)
        if stage and stage["status"] == "fail":
            return f"{name}: {short(stage['reason'], 300)}"
    skipped = [n for n in STAGES if _stage(result, n)["status"] == "skip"]
    return "every stage passed" if not skipped else f"no stage failed; skipped {', '.join(skipped)}"


def _row(cells: list[str], widths: list[int]) -> str:
    first = cells[0].ljust(widths[0])
    return " ".join([first, *(c.center(w) for c, w in zip(cells[1:], widths[1:], strict=True))]).rstrip()


def _wrap(items: Iterable[str], width: int = 110) -> list[str]:
    lines, line = [], "  "
    for item in items:
        if len(line) + len(item) + 3 > width and line.strip():
            lines.append(line.rstrip())
            line = "  "
        line += item + "   "
    if line.strip():
        lines.append(line.rstrip())
    return lines
