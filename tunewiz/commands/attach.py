"""`tunewiz attach [RUN]`: the monitor for a run (the newest by default)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("attach", help="monitor a run (default: the newest)",
                       description="Open the monitor on a run: loss, speed, the eval answers, the log. "
                                   "Closing it leaves the run training.")
    s.add_argument("run", nargs="?", help="run directory or name")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")
    return s


def run(args) -> int:
    from tunewiz.engine.contract.errors import TunewizError
    from tunewiz.engine.contract.rundir import resolve_run

    run_dir = resolve_run(args.run, args.output_dir)
    if run_dir is None:
        what = f"no run matches {args.run!r}" if args.run else f"no runs in {args.output_dir}"
        raise TunewizError(what, "see `tunewiz runs`, or start one with `tunewiz`")
    from tunewiz.tui.app import open_monitor

    open_monitor(run_dir, args.output_dir)
    return 0
