"""`tunewiz stop [RUN]`: stop a run gracefully (checkpoint, then exit)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("stop", help="stop a run gracefully: checkpoint, then exit",
                       description="Ask a running run to write a checkpoint and exit; `tunewiz train RUN "
                                   "--resume` continues it.")
    s.add_argument("run", nargs="?", help="run directory or name (default: the newest)")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")
    s.add_argument("--wait", action="store_true", help="wait until the run has exited")
    return s


def run(args) -> int:
    from tunewiz.engine.contract import rundir
    from tunewiz.engine.launch import request_stop

    request_stop(rundir.require_run(args.run, args.output_dir), wait=args.wait)
    return 0
