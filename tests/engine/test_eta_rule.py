"""The one ETA rule: the pace of the recent steps, shown as a guess until a few have run."""

from __future__ import annotations

import os
import socket

from tunewiz.engine.contract.progress_meter import SURE_AFTER, EtaWindow, format_eta

from support.recorded_runs import recorded_run, step


def test_eta_follows_the_recent_pace_not_the_average_since_the_start():
    window, t = EtaWindow(), 0.0
    window.add(0, t)
    for i in range(1, 6):          # five slow warm-up steps (compilation, caches): 30 s each
        t += 30.0
        window.add(i, t)
    for i in range(6, 106):        # then 1 s per step
        t += 1.0
        window.add(i, t)
    # 895 steps left at 1 s each; the average since the start (2.4 s/step) would say 36 min.
    assert window.eta(1000) == 895.0


def test_eta_is_unknown_before_a_second_mark_and_when_time_stands_still():
    window = EtaWindow()
    assert window.eta(10) is None
    window.add(3, 5.0)
    assert window.eta(10) is None
    window.add(3, 6.0)             # no progress: no pace to extrapolate
    assert window.eta(10) is None


def test_a_guess_reads_as_one():
    assert format_eta(823) == "13m43s"
    assert format_eta(823, guess=True) == "~14m"
    assert format_eta(20, guess=True) == "~1m"
    assert format_eta(4 * 3600 + 600, guess=True) == "~4h10m"
    assert format_eta(None) == "-" and format_eta(float("nan"), missing="–") == "–"


def test_runs_marks_the_eta_of_a_run_that_has_only_started(tmp_path, cli):
    start = {"t": 1.0, "type": "start", "name": "fresh", "config": {}, "world_size": 1, "total_steps": 400}
    state = {"status": "running", "pid": os.getpid(), "host": socket.gethostname()}
    recorded_run(tmp_path, "fresh", "20260101-000000", [start, step(1, 400, 2.0)], state)
    recorded_run(tmp_path, "steady", "20260101-000001",
                 [{**start, "name": "steady"}, *[step(i, 400, 1.0) for i in range(1, SURE_AFTER + 3)]], state)
    r = cli("runs", "--output-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    eta_fresh, eta_steady = rows["fresh-20260101-000000"].split()[-1], rows["steady-20260101-000001"].split()[-1]
    assert eta_fresh == "~13m", r.stdout            # 399 steps x 2 s, a guess after one step
    assert eta_steady == format_eta((400 - SURE_AFTER - 2) * 2.0), r.stdout
