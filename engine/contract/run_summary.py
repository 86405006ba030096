"""A run's state folded from its events: the statuses a run can be in, and the summary
that `tunewiz runs`, Home and the monitor show. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal

RunStatus = Literal["starting", "running", "completed", "stopped", "failed"]
LIVE: tuple[RunStatus, ...] = ("starting", "running")            # the engine may still write
FINISHED: tuple[RunStatus, ...] = ("completed", "stopped", "failed")  # a `done` event says so
CONVERTIBLE: tuple[RunStatus, ...] = ("completed", "stopped")     # checkpoints to convert and merge


@dataclass
class RunSummary:
    """What a list of runs shows, folded from events: status, progress, last loss."""

    name: str = ""
    status: RunStatus = "starting"
    step: int = 0
    total: int = 0
    epoch: float = 0.0
    loss: float | None = None
    eta_s: float | None = None
    started: float | None = None
    error: dict | None = None
    final_path: str | None = None
    evals: list[dict] = field(default_factory=list)

    def apply(self, ev: dict) -> None:
        kind = ev.get("type")
        if kind == "start":
            self.name = ev.get("name", self.name)
            self.total = ev.get("total_steps", self.total) or 0
            self.started = self.started or ev.get("t")
            self.status = "running"
        elif kind == "step":
            self.step, self.total = ev.get("step", self.step), ev.get("total", self.total)
            self.loss, self.eta_s, self.epoch = ev.get("loss"), ev.get("eta_s"), ev.get("epoch", self.epoch)
            self.status = "running"
        elif kind == "eval":
            self.evals.append(ev)
        elif kind == "error":
            self.error = ev
        elif kind == "done":
            self.status = ev.get("status", "failed")
            self.final_path = ev.get("path")


def summarize(events: Iterator[dict] | list[dict]) -> RunSummary:
    s = RunSummary()
    for ev in events:
        s.apply(ev)
    return s
