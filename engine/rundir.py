"""The run directory contract. Torch-free (the TUI lists and watches runs with it).

``<output_dir>/<name>-<YYYYmmdd-HHMMSS>/`` holds config.yaml, events.jsonl, state.json
(pid, pgid, host, status), logs/, checkpoints/step-N/, adapter/ or hf/, merged/ and
eval/step-N.txt. A new run never reuses an existing directory.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import TunewizError
from .events import RunSummary, pid_alive, read_events, summarize

CONFIG = "config.yaml"
EVENTS = "events.jsonl"
STATE = "state.json"
LOGS = "logs"
CHECKPOINTS = "checkpoints"
_RUN_RE = re.compile(r"-\d{8}-\d{6}(-\d+)?(-node\d+)?$")


def new_run_dir(output_dir: str | Path, name: str, suffix: str = "") -> Path:
    """Create a fresh run directory; a clash in the same second gets a -2, -3... suffix.
    Nodes other than 0 of a multi-node run add -nodeK: their folder holds only logs."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = root / ((f"{name}-{stamp}" if i == 1 else f"{name}-{stamp}-{i}") + suffix)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / LOGS).mkdir()
        return path
    raise RuntimeError(f"cannot create a run directory under {root}")


def write_state(run: Path, **fields) -> dict:
    """Merge fields into state.json atomically (write a temp file, then rename)."""
    state = read_state(run)
    state.update(fields)
    tmp = run / f".{STATE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, run / STATE)
    return state


def read_state(run: Path) -> dict:
    try:
        return json.loads((Path(run) / STATE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def mark_running(run: Path) -> dict:
    return write_state(run, pid=os.getpid(), pgid=os.getpgid(0), host=socket.gethostname(),
                       status="running", updated=time.time())


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file() and bool(_RUN_RE.search(path.name))


def run_name(path: Path) -> str:
    """The config name a run directory was made for (its timestamp suffix removed)."""
    return _RUN_RE.sub("", Path(path).name)


def is_other_node(path: Path) -> bool:
    """A -nodeK folder: logs of a node other than 0, not a run to resume or attach."""
    return bool(re.search(r"-node\d+$", Path(path).name))


def list_runs(output_dir: str | Path) -> list[Path]:
    """Run directories under output_dir, newest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if is_run_dir(p)]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def resolve_run(arg: str | None, output_dir: str | Path = "work_dirs") -> Path | None:
    """A run given as a path, a directory name under output_dir, or None for the newest."""
    if arg:
        p = Path(arg)
        if is_run_dir(p):
            return p
        candidate = Path(output_dir) / arg
        if is_run_dir(candidate):
            return candidate
        matches = [r for r in list_runs(output_dir) if r.name.startswith(arg)]
        return matches[0] if matches else None
    runs = list_runs(output_dir)
    return runs[0] if runs else None


def require_run(arg: str | None, output_dir: str | Path = "work_dirs") -> Path:
    """resolve_run for commands that act on an existing run: none found is a user error."""
    run = resolve_run(arg, output_dir)
    if run is None:
        raise TunewizError(f"no run {arg or ''} under {output_dir}".replace("  ", " "),
                           "list runs with `tunewiz runs`")
    return run


@dataclass
class RunInfo:
    path: Path
    summary: RunSummary
    state: dict

    @property
    def status(self) -> str:
        return self.summary.status


def run_info(run: Path) -> RunInfo:
    """Status folded from events, corrected by the pid: a dead engine is never 'running'."""
    run = Path(run)
    summary = summarize(read_events(run / EVENTS))
    state = read_state(run)
    if summary.status in ("starting", "running"):
        same_host = state.get("host") in (None, socket.gethostname())
        if state.get("status") in ("completed", "stopped", "failed"):
            summary.status = state["status"]
        elif same_host and state.get("pid") and not pid_alive(state["pid"]):
            summary.status = "failed"
            if summary.error is None:
                summary.error = {"kind": "internal", "msg": "the engine process ended without a word",
                                 "hint": f"see {run / LOGS}"}
    return RunInfo(run, summary, state)


def checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints (those with their marker file), oldest first."""
    root = Path(run) / CHECKPOINTS
    if not root.is_dir():
        return []
    # "step-N.tmp" is a checkpoint being written: it gets its marker just before the
    # rename, so it must not count (nor break the sort) in that window.
    done = [p for p in root.glob("step-*")
            if p.name[len("step-"):].isdigit() and (p / "trainer_state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len("step-"):]))
