"""How numbers and times read on screen (one place, so every screen says it alike)."""

from __future__ import annotations

import math
import time


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def clock(t: float | None) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(t)) if t else "–"


def loss(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4f}"


def rate(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


STATUS_STYLE = {"running": "bold green", "starting": "yellow", "completed": "bold cyan",
                "stopped": "yellow", "failed": "bold red"}


def status_markup(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, '')}]{status}[/]"
