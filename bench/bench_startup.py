"""Time to first screen: start `tunewiz` in a fresh 80x24 tmux window, the way a user on
SSH does, and time until the first screen is drawn (read back with capture-pane).

    python bench/bench_startup.py            # 5 starts each: empty folder, folder with runs

Two cases: a folder with no runs (the app opens the wizard's Model step) and a folder
whose work_dirs/ holds 20 finished runs (the app opens Home with the run table). Also
times `tunewiz --help`. Prints the median and the worst start of each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TUNEWIZ = str(Path(sys.executable).with_name("tunewiz"))


def first_screen_s(cwd: Path, marker: str, timeout: float = 30) -> float:
    """Seconds from launching tunewiz in a new tmux server to `marker` on the screen."""
    sock = f"tunewiz-bench-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock]
    try:
        started = time.perf_counter()
        subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", "-c", str(cwd), TUNEWIZ], check=True)
        while time.perf_counter() - started < timeout:
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
            if marker in screen:
                return time.perf_counter() - started
            time.sleep(0.01)
        raise SystemExit(f"{marker!r} did not appear within {timeout}s:\n{screen}")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def fake_runs(root: Path, n: int) -> None:
    """Finished runs as the engine leaves them: config, state and an events log."""
    for i in range(n):
        run = root / "work_dirs" / f"assistant-20261101-{i:06d}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("name: assistant\n")
        (run / "state.json").write_text(json.dumps({"status": "completed", "pid": None}))
        events = [{"type": "start", "t": 1.0, "total_steps": 100, "name": "assistant"}]
        events += [{"type": "step", "t": 1.0 + s, "step": s, "total": 100, "loss": 2.0 / s, "lr": 1e-4,
                    "grad_norm": 1.0, "tokens_per_s": 1000.0, "mem_gib": 1.0, "eta_s": 0.0, "epoch": 0.1}
                   for s in range(1, 101)]
        events.append({"type": "done", "t": 200.0, "status": "completed", "path": None})
        (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("bench_startup needs tmux")
    with tempfile.TemporaryDirectory() as tmp:
        empty, busy = Path(tmp) / "empty", Path(tmp) / "busy"
        empty.mkdir()
        fake_runs(busy, 20)
        help_s = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            subprocess.run([TUNEWIZ, "--help"], capture_output=True, check=True)
            help_s.append(time.perf_counter() - t)
        cases = {"tunewiz --help": help_s,
                 "first screen, no runs (wizard)": [first_screen_s(empty, "1 Model") for _ in range(args.repeats)],
                 "first screen, 20 runs (Home)": [first_screen_s(busy, "Runs in") for _ in range(args.repeats)]}
    for name, times in cases.items():
        print(f"{name:34s} median {statistics.median(times):.2f}s  worst {max(times):.2f}s  (n={len(times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
