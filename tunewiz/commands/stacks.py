"""`tunewiz stacks [RUN]`: print what every process of a running run is doing."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("stacks", help="print what every process of a running run is doing (Python stacks)",
                       description="Signal the run's processes on this machine (SIGUSR1: each prints its "
                                   "threads' Python stacks to its log and carries on) and show the stacks. "
                                   "For a run that seems stuck.")
    s.add_argument("run", nargs="?", help="run directory or name (default: the newest)")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")
    s.add_argument("--wait", type=float, default=1.0, help="seconds to let the processes write (default 1)")
    return s


def run(args) -> int:
    from tunewiz.engine.contract import rundir
    from tunewiz.engine.stacks import collect_stacks

    run_dir = rundir.require_run(args.run, args.output_dir)
    pids, stacks = collect_stacks(run_dir, args.wait)
    print(f"{run_dir.name}: signalled pid(s) {', '.join(map(str, pids))}")
    for log, text in stacks.items():
        print(f"\n=== {log}\n{text}")
    if not stacks:
        print("no stacks in logs/: a run in the foreground prints them in its own terminal")
    return 0
