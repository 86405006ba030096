"""`tunewiz runs`: the runs in the output directory, newest first. Torch-free."""

from __future__ import annotations

import time

from . import rundir


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def cmd_runs(args) -> int:
    runs = rundir.list_runs(args.output_dir)
    if not runs:
        print(f"no runs under {args.output_dir} (start one with `tunewiz train CONFIG`)")
        return 0
    rows = [("RUN", "STATUS", "STEP", "LOSS", "STARTED", "ETA")]
    for run in runs:
        info = rundir.run_info(run)
        s = info.summary
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started)) if s.started else "-"
        eta = format_eta(s.eta_s) if s.status == "running" else "-"
        rows.append((run.name, s.status, f"{s.step}/{s.total or '?'}",
                     f"{s.loss:.4f}" if s.loss is not None else "-", started, eta))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
