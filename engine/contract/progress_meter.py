"""Progress of a long phase (tokenizing): rate and ETA, as events and as printed lines.

Events go out at most twice a second (a million samples would otherwise write thousands
of lines); printed lines every few seconds on a terminal and every 15 s into a log file,
so neither floods. The first and the last update always go out.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from typing import Callable

EVENT_EVERY_S = 0.5
# The ETA rule, one for the engine's events, the monitor and `tunewiz runs`: the pace of the
# last ETA_WINDOW updates (the first steps, with compilation and warm-up, are slower and
# would weigh on the estimate for the whole run), and below SURE_AFTER steps a guess.
ETA_WINDOW = 20
SURE_AFTER = 5


class EtaWindow:
    """Time left from the pace of the most recent updates, not from the start."""

    def __init__(self, window: int = ETA_WINDOW):
        self.marks: deque[tuple[float, float]] = deque(maxlen=window + 1)   # (done, time)

    def add(self, done: float, t: float) -> None:
        self.marks.append((done, t))

    def eta(self, total: float) -> float | None:
        if len(self.marks) < 2:
            return None
        (done0, t0), (done1, t1) = self.marks[0], self.marks[-1]
        if done1 <= done0 or t1 < t0:
            return None
        return max(total - done1, 0) * (t1 - t0) / (done1 - done0)


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_eta(seconds: float | None, guess: bool = False, missing: str = "-") -> str:
    """"13m43s", or "~14m" while it is a guess (a guess to the second would claim too much)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds < 0:
        return missing
    if not guess:
        return format_duration(seconds)
    minutes = max(1, round(seconds / 60))
    return f"~{minutes}m" if minutes < 60 else f"~{minutes // 60}h{minutes % 60:02d}m"


class ProgressMeter:
    def __init__(self, label: str, unit: str, emit: Callable | None = None, phase: str = "",
                 show: bool = True, stream=None, clock: Callable[[], float] = time.monotonic):
        self.label, self.unit, self.emit, self.phase = label, unit, emit, phase or label
        self.show = show
        self.stream = stream
        self.clock = clock
        self.started: float | None = None
        self._last_event = self._last_line = -1e9
        self.line_every_s = 3.0 if self._tty() else 15.0

    def _tty(self) -> bool:
        try:
            return (self.stream or sys.stdout).isatty()
        except (AttributeError, ValueError):
            return False

    def rate_eta(self, done: int, total: int) -> tuple[float, float | None]:
        elapsed = self.clock() - (self.started or self.clock())
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 and total >= done else None
        return rate, eta

    def update(self, done: int, total: int) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        final = total and done >= total
        rate, eta = self.rate_eta(done, total)
        if self.emit is not None and (final or now - self._last_event >= EVENT_EVERY_S):
            self._last_event = now
            self.emit("progress", phase=self.phase, done=done, total=total, unit=self.unit,
                      rate=round(rate, 1), eta_s=None if eta is None else round(eta, 1))
        if self.show and (final or now - self._last_line >= self.line_every_s):
            self._last_line = now
            print(self.line(done, total, rate, eta), file=self.stream or sys.stdout, flush=True)

    def line(self, done: int, total: int, rate: float, eta: float | None) -> str:
        return progress_text(self.label, done, total, self.unit, rate, eta)


# what each phase is called on screen (events carry the short phase name)
PHASE_LABELS = {"tokenize": "tokenizing", "load": "loading", "convert": "converting", "merge": "merging"}


def progress_text(label: str, done: int, total: int, unit: str = "", rate: float | None = None,
                  eta: float | None = None) -> str:
    """"tokenizing: 12,288 of ~50,000 samples (24%) · 3,100 samples/s · ETA 12s" (the CLI
    line and the monitor's, from the same numbers). The total is marked ~ until reached:
    it is an estimate while the data is read."""
    finished = bool(total) and done >= total
    of = f" of {'' if finished else '~'}{total:,}" if total else ""
    share = f" ({done / total:.0%})" if total else ""
    text = f"{label}: {done:,}{of}{' ' + unit if unit else ''}{share}"
    if rate:
        text += f" · {rate:,.0f} {unit or 'items'}/s"
    if finished:
        text += " · done"
    elif eta is not None:
        text += f" · ETA {format_duration(eta)}"
    return text


def describe_progress(ev: dict) -> str:
    """A progress event in under 48 columns (beside the monitor's bar at 80x24):
    "tokenizing 12,288/~50,000 · 3,100/s · ETA 12s"."""
    phase = ev.get("phase") or ""
    done, total = int(ev.get("done") or 0), int(ev.get("total") or 0)
    finished = bool(total) and done >= total
    text = f"{PHASE_LABELS.get(phase, phase)} {done:,}" + (f"/{'' if finished else '~'}{total:,}" if total else "")
    if ev.get("rate"):
        text += f" · {ev['rate']:,.0f}/s"
    if not finished and ev.get("eta_s") is not None:
        text += f" · ETA {format_duration(ev['eta_s'])}"
    return text
