"""`tunewiz runs`: the runs in the output directory, newest first. Torch-free.

Each run is read on its own (run_listing): one that cannot be read is listed as
``unreadable``, with the reason under the table, and never hides the others.
"""

from __future__ import annotations

import argparse
import time

from tunewiz.engine.contract.progress_meter import SURE_AFTER, format_eta


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("runs", help="list runs with status, step/total, last loss",
                       description="The runs in the output folder, newest first: status, step of total, "
                                   "last loss, start time and, while training, the time left.")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")
    return s


def format_started(t: float | None) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"
    except (OverflowError, OSError, ValueError):  # a time no clock can show
        return "-"


def printable(name: str) -> str:
    """A folder name as one line of valid text (undecodable bytes and controls replaced)."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def run(args) -> int:
    from tunewiz.engine.contract.run_listing import UNREADABLE, default_lister

    runs = default_lister().list(args.output_dir)
    if not runs:
        print(f"no runs under {args.output_dir} (start one with `tunewiz train CONFIG`)")
        return 0
    rows = [("RUN", "STATUS", "STEP", "LOSS", "STARTED", "ETA")]
    for r in runs:
        if r.status == UNREADABLE:
            rows.append((printable(r.path.name), r.status, "-", "-", "-", "-"))
            continue
        eta = format_eta(r.eta_s, guess=r.step < SURE_AFTER) if r.status == "running" else "-"
        rows.append((printable(r.path.name), r.status, f"{r.step}/{r.total or '?'}",
                     f"{r.loss:.4f}" if r.loss is not None else "-", format_started(r.started), eta))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in runs:
        if r.status == UNREADABLE:
            print(f"{printable(r.path.name)}: unreadable: {printable(r.problem)}")
    return 0
