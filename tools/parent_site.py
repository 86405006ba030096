"""Let a GPU machine's venv see the packages of the python that made it, where that python
is itself in a venv.

`python3 -m venv --system-site-packages` lets the new venv see the *base* interpreter's
site-packages, not those of a venv that python3 belongs to. Where the machine's CUDA torch
lives in such a venv (`python -m venv ~/torch && pip install torch`, or an image's own
venv), the new venv would not see that torch: `make setup` would then fetch another
multi-GB copy, or fail with no network. A .pth file in the new venv adds the outer venv's
site-packages after the new venv's own, which is what --system-site-packages does for a base
interpreter, so the venv's own installs still come first.

    python3 tools/parent_site.py .venv        # with the python3 that made .venv

Outside a venv (a system or conda python) it writes nothing: --system-site-packages already
sees that site. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import site
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "tunewiz-parent-site.pth"


def outer_site_dirs() -> list[str]:
    """This python's venv site-packages folders (none when it is not in a venv)."""
    if sys.prefix == sys.base_prefix:
        return []
    prefix = Path(sys.prefix).resolve()
    dirs = [Path(d) for d in site.getsitepackages()]
    # Only the venv's own folders: the base interpreter's are what --system-site-packages adds.
    return [str(d) for d in dirs if d.is_dir() and prefix in d.resolve().parents]


def venv_site_dir(venv: Path) -> Path:
    """Where the new venv's python looks for .pth files (its purelib)."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 tools/parent_site.py VENV", file=sys.stderr)
        return 2
    venv = Path(argv[0])
    if not (venv / "pyvenv.cfg").is_file():
        print(f"tools/parent_site.py: {venv} is not a venv (no pyvenv.cfg): make it first "
              f"with python3 -m venv --system-site-packages {venv}", file=sys.stderr)
        return 1
    pth = venv_site_dir(venv) / PTH_NAME
    dirs = outer_site_dirs()
    if not dirs:
        pth.unlink(missing_ok=True)        # a venv remade by a non-venv python inherits nothing
        return 0
    pth.parent.mkdir(parents=True, exist_ok=True)
    pth.write_text("".join(d + "\n" for d in dirs), encoding="utf-8")
    print(f"{venv} also sees {', '.join(dirs)} (the venv of {sys.executable})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
