"""Follows one run: folds its events into a ``RunView`` that the monitor draws.

Reads ``events.jsonl`` incrementally from a byte offset (the engine's ``EventReader``), so
re-attaching to a 100k-step run parses each line once and following it costs only the new
bytes. Never writes into the run directory: two TUIs can follow one run side by side.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from tunewiz.engine.contract.events import EventReader
from tunewiz.engine.contract.run_summary import FINISHED, RunSummary
from tunewiz.engine.contract.rundir import EVENTS, engine_gone, read_state, silent_death

LOG_TAIL = 200


@dataclass
class RunView:
    """Everything the monitor shows, accumulated from events (and state.json for the pid)."""

    run: Path
    summary: RunSummary = field(default_factory=RunSummary)
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)
    mem_gib: list[float] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    log_count: int = 0               # lines ever logged (``logs`` keeps only the tail)
    progress: dict | None = None
    start: dict | None = None
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.summary.status in FINISHED

    def apply(self, ev: dict) -> None:
        if problem := _malformed(ev):
            # A hand-edited or damaged line: shown in the log, never drawn (nor a crash).
            self._log(f"skipped a malformed {ev.get('type')} event ({problem})")
            return
        self.summary.apply(ev)
        kind = ev.get("type")
        if kind == "start":
            self.start = ev
        elif kind == "step":
            self.steps.append(int(ev.get("step") or 0))
            self.losses.append(_num(ev.get("loss")))
            self.lrs.append(_num(ev.get("lr")))
            self.tokens_per_s.append(_num(ev.get("tokens_per_s")))
            self.mem_gib.append(_num(ev.get("mem_gib")))
            self.progress = None
        elif kind == "progress":
            self.progress = ev
        elif kind == "checkpoint":
            self.checkpoints.append(int(ev.get("step") or 0))
            self._log(f"checkpoint at step {ev.get('step')}: {ev.get('path')}")
        elif kind == "log":
            self._log(f"{ev.get('level', 'info')}: {ev.get('msg', '')}")
        elif kind == "error":
            self._log(f"error ({ev.get('kind')}): {ev.get('msg')}")
        elif kind == "done":
            self._log(f"done: {ev.get('status')}")

    def _log(self, line: str) -> None:
        self.logs.append(line)
        self.log_count += 1
        if len(self.logs) > LOG_TAIL * 2:
            del self.logs[:-LOG_TAIL]


# Fields the monitor draws as numbers; anything else in them makes the event malformed.
_NUMBERS = {"start": ("total_steps", "world_size", "t"),
            "step": ("step", "total", "epoch", "loss", "lr", "tokens_per_s", "mem_gib", "eta_s"),
            "progress": ("done", "total", "rate", "eta_s"), "checkpoint": ("step",), "eval": ("step",)}


def _malformed(ev: dict) -> str:
    for key in _NUMBERS.get(ev.get("type"), ()):
        value = ev.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{key} is not a number"
        if isinstance(value, float) and key in ("step", "total", "total_steps", "done") and not value.is_integer():
            return f"{key} is not a count"
    if ev.get("type") == "eval" and not isinstance(ev.get("samples", []), list):
        return "samples is not a list"
    if ev.get("type") == "error" and not isinstance(ev.get("hint", ""), (str, type(None))):
        return "hint is not text"
    if ev.get("type") == "done" and ev.get("status") not in (None, *FINISHED):
        return "status is not completed, stopped or failed"
    return ""


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class RunFollower:
    """Thread-safe: a worker thread calls ``poll``; the UI reads ``snapshot`` under the lock."""

    def __init__(self, run: str | Path):
        self.run = Path(run)
        self.view = RunView(self.run)
        self.lock = threading.Lock()
        self._reader = EventReader(self.run / EVENTS)

    def poll(self) -> bool:
        """Reads what is new; True when the view changed."""
        changed = False
        status = None
        while events := self._reader.read_new(max_bytes=8 << 20):
            with self.lock:
                for ev in events:
                    self.view.apply(ev)
            changed = True
        if not self.view.finished and (status := self._status_if_engine_gone()):
            # The engine may have written its last events just before exiting: read them
            # first, so a clean finish never shows as a crash.
            while events := self._reader.read_new(max_bytes=8 << 20):
                with self.lock:
                    for ev in events:
                        self.view.apply(ev)
                changed = True
        if not self.view.finished and status:
            with self.lock:
                self.view.summary.status = status
                if status == "failed" and self.view.summary.error is None:
                    self.view.summary.error = silent_death(self.run)
            changed = True
        if changed:
            with self.lock:
                self.view.version += 1
        return changed

    def _status_if_engine_gone(self) -> str | None:
        # rundir's one liveness rule, applied to the incremental view.
        return engine_gone(read_state(self.run))
