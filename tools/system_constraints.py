"""constraints.txt without the pins of what the system already provides, for a GPU machine's venv.

constraints.txt pins the versions the CPU set-up is tested with: torch's CPU wheel and its
neighbours (numpy, sympy, networkx, ...). A GPU machine's venv sees the system's CUDA torch
through --system-site-packages; installing with those pins would make pip put other versions
of torch and of the packages it was built against into the venv, in front of the system's.
So the GPU set-up installs with a copy of the constraints that leaves out every distribution
already installed outside the venv: pip then keeps the system's copy wherever it satisfies
the project's requirements (and installs the newest one that does where it does not).

    .venv/bin/python tools/system_constraints.py constraints.txt > .venv/constraints-gpu.txt

It runs with the venv's own python before the project is installed, so it uses only the
standard library.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

HEADER = ("# constraints.txt without the pins of distributions the system site already has "
          "(tools/system_constraints.py)")


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_name(line: str) -> str | None:
    """The distribution a constraints line pins ("torch==2.13.0" -> "torch"); None for
    comments, blank lines and options."""
    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-"):
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", text)
    return canonical(match.group(0)) if match else None


def without_pins(lines: list[str], installed: set[str]) -> tuple[list[str], list[str]]:
    """(the constraints lines to keep, the names left out): every pin of a distribution in
    `installed` (canonical names) goes."""
    kept, dropped = [HEADER], []
    for line in lines:
        name = pinned_name(line)
        if name is not None and name in installed:
            dropped.append(name)
        else:
            kept.append(line)
    return kept, dropped


def system_distributions() -> set[str]:
    """Canonical names of the distributions this venv's python imports from outside the venv
    itself (the system and user site-packages that --system-site-packages lets in). A name
    found in both counts where it is found first, as import and pip see it: a copy the venv
    installed itself keeps its pin."""
    venv = Path(sys.prefix).resolve()
    first: dict[str, bool] = {}
    for dist in metadata.distributions():          # in sys.path order
        name = dist.metadata["Name"]
        if not name or canonical(name) in first:
            continue
        where = Path(str(dist.locate_file(""))).resolve()
        first[canonical(name)] = where != venv and venv not in where.parents
    return {name for name, outside in first.items() if outside}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/system_constraints.py CONSTRAINTS > OUT", file=sys.stderr)
        return 2
    if sys.prefix == sys.base_prefix:
        # Outside a venv every distribution is "the system's": all pins would go.
        print("tools/system_constraints.py: run it with the venv's python (.venv/bin/python)", file=sys.stderr)
        return 1
    source = Path(argv[0])
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        print(f"tools/system_constraints.py: cannot read {source}: {e.strerror}", file=sys.stderr)
        return 1
    kept, dropped = without_pins(lines, system_distributions())
    print("\n".join(kept))
    if dropped:
        print(f"the system's own copies stand for: {', '.join(sorted(dropped))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
