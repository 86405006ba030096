"""The detached supervisor of one run: `python -m tunewiz.engine.supervisor --run-dir RUN`.

`tunewiz train --detach` prepares and locks the run directory, then starts this in a new
session and hands it the lock. It trains in-process (one device) or runs torchrun and
watches the workers (several), and ends the run with a `done` event either way.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tunewiz.engine.supervisor",
                                description="Supervise a prepared run directory (started by tunewiz train --detach).")
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--node-rank", type=int, default=None)
    args = p.parse_args(argv)
    from .entry_point import run_entry
    from .launch import supervise_detached

    return run_entry(lambda: supervise_detached(args.run_dir, args.resume, args.node_rank))


if __name__ == "__main__":
    raise SystemExit(main())
