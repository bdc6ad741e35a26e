"""A src-layout service installed in editable mode: runs must use the worktree's code, not the user's checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.tools.judge.candidate import run_candidate_for_issue
from tests.repos import new_repo

TEST = """
from inventory.stock import reserve


def test_reserving_more_than_stock_is_refused_politely():
    assert reserve({"apple": 1}, "apple", 5) is False
"""


def test_src_layout_runs_see_the_deployed_code_not_the_users_edits(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "inv")
    repo.commit(
        {
            "pyproject.toml": (
                '[project]\nname = "inventory"\nversion = "1"\n[tool.setuptools.packages.find]\nwhere = ["src"]\n'
            ),
            "src/inventory/__init__.py": "",
            "src/inventory/stock.py": (
                "def reserve(stock, sku, qty):\n"
                "    left = stock[sku] - qty\n"
                "    if left < 0:\n"
                "        raise ValueError('not enough ' + sku)\n"
                "    stock[sku] = left\n"
                "    return True\n"
            ),
        },
        "inventory 1",
    )
    repo.tag("v1")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    # An editable install, as setuptools writes it: a .pth file putting the user's src/ on sys.path.
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "__editable__.inventory-1.pth").write_text(str(repo.root / "src") + "\n")
    events = repo.capture(
        "from inventory.stock import reserve\nreserve({'apple': 1}, 'apple', 5)\n",
        release="v1",
        pythonpath=(repo.root / "src",),
    )
    # The user has already "fixed" the bug in the checkout, uncommitted; the deployed code still has it.
    stock = repo.root / "src" / "inventory" / "stock.py"
    stock.write_text(stock.read_text().replace("        raise ValueError('not enough ' + sku)", "        return False"))
    ctx = AppContext.open(
        load_settings(repo=repo.root, data_dir=tmp_path / "data", service_python=venv / "bin" / "python")
    )
    try:
        import_events(ctx, ctx.store.create_project("inv"), [("e", events[0])], source="test")
        result = run_candidate_for_issue(
            *ctx.collaborators(), issue_id=1, test_code=TEST, test_path="tests/test_stock.py"
        )
    finally:
        ctx.close()
    reproduces = next(g for g in result.gates if g.name == "reproduces")
    assert reproduces.passed, reproduces.evidence
    assert "ValueError raised from src/inventory/stock.py" in reproduces.evidence
