"""Packages made missing for the processes a test starts, whatever this machine has installed.

A test of "bitsandbytes is not installed" must mean the same on a GPU machine, where `make
setup` installs it. `hiding(folder, names)` writes a sitecustomize.py that puts a finder in
front of the import system: each hidden name (and its submodules) is "No module named ...",
so both `importlib.util.find_spec` and `import` see it missing, as on a machine without it.
"""

from __future__ import annotations

import os
from pathlib import Path

SITECUSTOMIZE = '''\
import sys

HIDDEN = {names!r}


class HiddenPackages:
    """Finds the hidden names first and says they are not there."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, HiddenPackages())
'''


def hiding(folder: Path, names: list[str], env: dict | None = None) -> dict:
    """`env` (default: this process's) with `names` missing for the processes started with it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(names=sorted(names)))
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH")) if p)
    return env
