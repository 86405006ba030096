"""One training process of a multi-process run: `torchrun ... -m tunewiz.engine.rank_worker --run-dir RUN`.

Started by the run's supervisor through torchrun (RANK, LOCAL_RANK, WORLD_SIZE in the
environment); the supervisor holds the run's lock, so a worker never takes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tunewiz.engine.rank_worker",
                                description="Train one rank of a run (started by torchrun).")
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    from .entry_point import run_entry
    from .train import run_training

    return run_entry(lambda: run_training(args.run_dir, resume=args.resume))


if __name__ == "__main__":
    raise SystemExit(main())
