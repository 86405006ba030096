"""The TUI stays torch-free, and opening it is fast."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "deepspeed", "bitsandbytes")


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_tui_imports_no_torch():
    modules = imported_after(
        "import tunewiz.tui.app\n"
        "import tunewiz.tui.screens.home, tunewiz.tui.screens.monitor, tunewiz.tui.screens.chat\n"
        "import tunewiz.tui.screens.convert_merge, tunewiz.tui.screens.wizard.flow\n"
        "import tunewiz.tui.screens.wizard.model_step, tunewiz.tui.screens.wizard.preset_step\n"
        "import tunewiz.tui.screens.wizard.dataset_step, tunewiz.tui.screens.wizard.layout_step\n"
        "import tunewiz.tui.screens.wizard.review_step")
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)


def test_help_imports_no_torch():
    out = subprocess.run([sys.executable, "-m", "tunewiz", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "wizard" in out.stdout
    modules = imported_after("import sys; sys.argv = ['tunewiz', '--help']\n"
                             "from tunewiz.cli import build_parser; build_parser().format_help()")
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)


def test_first_screen_imports_stay_light():
    # What `tunewiz` imports before the first screen: the app and Home, no chart library.
    modules = imported_after("import tunewiz.tui.app, tunewiz.tui.screens.home")
    assert "textual_plotext" not in modules and "plotext" not in modules


def test_contract_imports_neither_torch_nor_textual():
    # Every module of engine.contract (new ones included), loaded for real: the import-linter
    # contract reads the source, this proves what the interpreter actually loads.
    modules = imported_after(
        "import importlib, pkgutil, tunewiz.engine.contract as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module(f'{c.__name__}.{m.name}')")
    assert "tunewiz.engine.contract.gpus" in modules and "tunewiz.engine.contract.layout_plan" in modules
    assert not {m.split(".")[0] for m in modules} & set(HEAVY + ("textual",))
    assert not any(m.startswith("tunewiz.tui") for m in modules)
