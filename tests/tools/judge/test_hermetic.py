"""The hermetic gate reads what a candidate runs and refuses every way out of the test into the process or harness."""

from __future__ import annotations

import ast

import pytest

from prodloop.tools.judge.hermetic import hermetic_findings
from prodloop.tools.reproduce.reconstruct import RESTORE_HELPER


def _findings(code: str, test: str = "test_it") -> list[str]:
    return [f"line {f.line}: {f.problem}" for f in hermetic_findings(ast.parse(code), test)]


HOSTILE = {
    "subprocess": ("import subprocess\n\ndef test_it():\n    subprocess.run(['id'])\n", "imports subprocess"),
    "os.system": ("import os\n\ndef test_it():\n    os.system('id')\n", "reaches os.system"),
    "environment dump": ("import os\n\ndef test_it():\n    print(dict(os.environ))\n", "reaches os.environ beyond"),
    "environment write": (
        "import os\n\ndef test_it():\n    os.environ['PATH'] = '/x'\n",
        "reaches os.environ beyond",
    ),
    "os from elsewhere": ("from pathlib import os\n\ndef test_it():\n    os.getpid()\n", "imports os from pathlib"),
    "eval": ("def test_it():\n    eval('1')\n", "calls eval()"),
    "dunder import": ("def test_it():\n    __import__('os')\n", "calls __import__()"),
    "computed getattr": ("def test_it(x='sys'):\n    getattr(object, x)\n", "computed attribute name"),
    "subclass walk": ("def test_it():\n    ().__class__.__base__.__subclasses__()\n", "reaches .__subclasses__"),
    "globals walk": ("def f():\n    pass\n\ndef test_it():\n    f.__globals__['x'] = 1\n", "reaches .__globals__"),
    "frame walk": (
        "def test_it():\n    try:\n        1/0\n    except Exception as e:\n        e.__traceback__.tb_frame\n",
        "reaches .tb_frame",
    ),
    "pytest internals": (
        "from _pytest import runner\n\ndef test_it():\n    runner.pytest_runtest_makereport\n",
        "imports from _pytest",
    ),
    "harness by fixture": (
        "def test_it(request):\n    request.config.pluginmanager.register(object())\n",
        "reaches .pluginmanager",
    ),
    "write outside tmp": (
        "def test_it():\n    open('/tmp/x', 'w').write('1')\n",
        "opens a file for writing outside tmp_path",
    ),
    "path open outside tmp": (
        "from pathlib import Path\n\ndef test_it():\n    Path('x.txt').open('w').close()\n",
        "opens a file for writing outside tmp_path",
    ),
    "log file": (
        "import logging\n\ndef test_it():\n    logging.getLogger().addHandler(logging.FileHandler('x'))\n",
        "reaches .FileHandler",
    ),
    "path write outside tmp": (
        "from pathlib import Path\n\ndef test_it():\n    Path('/home/u/.bashrc').write_text('x')\n",
        "writes files outside tmp_path (.write_text)",
    ),
    "autouse fixture": (
        "import pytest, ctypes\n\n@pytest.fixture(autouse=True)\ndef sneak():\n    ctypes.CDLL(None)\n\n"
        "def test_it():\n    assert 1\n",
        "imports ctypes",
    ),
    "class body at import": (
        "import subprocess\n\nclass Helper:\n    done = subprocess.run(['id'])\n\ndef test_it():\n    assert 1\n",
        "imports subprocess",
    ),
    "another test's decorator at import": (
        "import os\n\ndef deco(x):\n    return lambda f: f\n\n@deco(os.system('id'))\ndef test_other():\n"
        "    pass\n\ndef test_it():\n    assert 1\n",
        "reaches os.system",
    ),
    "module level": ("import signal\nsignal.alarm(1)\n\ndef test_it():\n    assert 1\n", "imports signal"),
    "plugins": ("pytest_plugins = ['evil']\n\ndef test_it():\n    assert 1\n", "loads pytest plugins"),
    "patch the process": (
        "from unittest import mock\n\ndef test_it():\n    with mock.patch.dict('os.environ', {}):\n        pass\n",
        "patches os.environ",
    ),
    "module handed around": (
        "import sys\n\ndef test_it(monkeypatch):\n    monkeypatch.setattr(sys, 'argv', [])\n",
        "passes the sys module around",
    ),
    "threads": (
        "import threading\n\ndef test_it():\n    threading.Thread(target=print).start()\n",
        "imports threading",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_way_out_of_the_test_is_refused_with_its_line(name: str) -> None:
    code, problem = HOSTILE[name]
    found = _findings(code)
    assert any(problem in f for f in found), found


BENIGN = {
    "synthesized shape": (
        "import asyncio\nimport re\nfrom decimal import Decimal\n\nimport pytest\n\nfrom shop.pricing import total\n\n"
        + RESTORE_HELPER
        + "\n\n@pytest.mark.parametrize('x', [Decimal('1'), re.compile('a')])\ndef test_it(x):\n"
        "    obj = _restored(object, {})\n    assert asyncio.run(total(x, obj)) == 1\n"
    ),
    "pure parts of os and sys": (
        "import os\nimport sys\n\nHERE = os.path.dirname(__file__)\n\ndef test_it():\n"
        "    assert os.path.join(HERE, 'x') and sys.version_info >= (3,)\n"
        "    if os.environ.get('DEBUG_AST'):\n        print('x', file=sys.stderr)\n"
    ),
    "writes under tmp_path": (
        "def test_it(tmp_path):\n    out = tmp_path / 'a'\n    out.mkdir()\n    (out / 'b.txt').write_text('x')\n"
        "    with open(out / 'c', 'w') as fh:\n        fh.write('y')\n"
        "    with (tmp_path / 'd').open('w') as fh:\n        fh.write('z')\n"
    ),
    "unittest case": (
        "import unittest\nfrom unittest.mock import patch\n\nclass T(unittest.TestCase):\n"
        "    def setUp(self):\n        self.x = 1\n\n    @patch('shop.pricing.dump', print)\n"
        "    def test_it(self):\n        self.assertEqual(self.x, 1)\n"
    ),
    "other tests' helpers": (
        "import os\nimport subprocess\n\ndef _helper():\n    subprocess.run(['id'])\n\n"
        "def test_other():\n    _helper()\n    os.system('x')\n\ndef test_it():\n    assert 1 + 1 == 2\n"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_what_regression_tests_really_do_is_hermetic(name: str) -> None:
    code = BENIGN[name]
    test = "T::test_it" if name == "unittest case" else "test_it"
    assert _findings(code, test) == []
