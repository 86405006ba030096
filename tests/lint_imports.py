"""Check the import contracts in pyproject.toml ([tool.importlinter]) with lint-imports.

The source tree keeps engine/, tui/ and presets/ beside tunewiz/, and they install as
tunewiz.engine, tunewiz.tui, tunewiz.presets. import-linter reads packages from disk, so
it is shown the installed shape: a temporary folder whose tunewiz/ links to tunewiz/'s
own files and to every folder of [tool.setuptools.package-dir], first on the path.

Usage: python tests/lint_imports.py [SOURCE_ROOT]   (default: this checkout). Exit code
and report are lint-imports' own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def build_view(root: Path, view: Path) -> None:
    """view/tunewiz/... laid out as the package installs, every entry a link into root."""
    package_dirs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top = view / "tunewiz"
    top.mkdir(parents=True)
    for entry in (root / package_dirs["tunewiz"]).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for package, folder in package_dirs.items():
        if package != "tunewiz":
            # tunewiz.engine -> view/tunewiz/engine, linked to root/engine.
            (view / package.replace(".", os.sep)).symlink_to(root / folder, target_is_directory=True)


def main(argv: list[str]) -> int:
    root = Path(argv[1]).resolve() if len(argv) > 1 else HERE
    lint = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="tunewiz-imports-") as tmp:
        build_view(root, Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        # The view is new each time, so a cache would only ever be stale.
        return subprocess.run([str(lint), str(root / "pyproject.toml"), "--no-cache"], cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
