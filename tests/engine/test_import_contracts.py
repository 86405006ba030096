"""The import contracts of pyproject.toml hold, and each one breaks when its rule is broken.

Each breach is made in a copy of the source tree, then checked with the same command
`make test` runs first (tests/lint_imports.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = REPO / "tests" / "lint_imports.py"


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LINT), str(root)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    shutil.copy(REPO / "pyproject.toml", root)
    for folder in ("tunewiz", "engine", "tui", "presets"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def test_this_tree_keeps_every_contract():
    out = lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 kept, 0 broken" in out.stdout


TUI = "the TUI imports only engine.contract"
ALONE = "engine.contract stands alone: it imports no other engine module"
NO_UI = "the engine imports neither textual nor the TUI"
TORCH_FREE = "engine.contract is torch-free and UI-free"

# (file to change, line appended to it, the contracts that must report it)
BREACHES = {
    "tui imports a new engine module": (
        "tui/services/gpus.py", "from tunewiz.engine import brand_new_module",
        {TUI}),
    "tui imports the contract package itself (allowed)": (
        "tui/services/model_folders.py", "from tunewiz.engine import contract",
        set()),
    "tui imports the engine's launcher": (
        "tui/services/model_folders.py", "import tunewiz.engine.launch",
        {TUI}),
    "contract imports the rest of the engine": (
        "engine/contract/faults.py", "from .. import brand_new_module",
        {ALONE}),
    "engine imports textual": (
        "engine/launch.py", "import textual.app",
        {NO_UI}),
    "engine imports the TUI": (
        "engine/merge.py", "from tunewiz.tui.services import gpus",
        {NO_UI}),
    "contract imports torch": (
        "engine/contract/events.py", "import torch",
        {TORCH_FREE}),
    "contract imports textual": (
        "engine/contract/config.py", "from textual.widgets import Static",
        {TORCH_FREE, NO_UI}),   # contract is part of the engine too
}


@pytest.mark.parametrize("breach", BREACHES, ids=list(BREACHES))
def test_a_breach_breaks_its_contracts_and_no_other(source_copy, breach):
    path, line, contracts = BREACHES[breach]
    target = source_copy / path
    original = target.read_text()
    new_module = source_copy / "engine" / "brand_new_module.py"
    new_module.write_text('"""A module added after the contracts were written."""\n')
    try:
        target.write_text(original + f"\n{line}  # breach\n")
        out = lint(source_copy)
    finally:
        target.write_text(original)
        new_module.unlink()
    assert out.returncode == (1 if contracts else 0), out.stdout
    # Report lines read "<contract name> BROKEN", maybe followed by "(n ignored imports)".
    broken = {line.split(" BROKEN")[0] for line in out.stdout.splitlines() if " BROKEN" in line}
    assert broken == contracts   # the rules that were broken, and no other
