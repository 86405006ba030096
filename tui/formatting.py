"""How numbers and times read on screen (one place, so every screen says it alike)."""

from __future__ import annotations

import math
import time

from rich.text import Text
from textual.content import Content


def _finite(value) -> bool:
    """A real, finite number (values read from a run's files may be anything)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def eta(seconds: float | None, guess: bool = False) -> str:
    """Time left, by the engine's one ETA rule; "~14m" while it is a guess."""
    from tunewiz.engine.contract.progress_meter import format_eta

    return format_eta(seconds, guess, missing="–")


def clock(t: float | None) -> str:
    try:
        return time.strftime("%m-%d %H:%M", time.localtime(t)) if t else "–"
    except (OverflowError, OSError, ValueError, TypeError):  # a time no clock can show
        return "–"


def loss(value: float | None) -> str:
    if not _finite(value):
        return "–"
    return f"{value:.4f}"


def rate(value: float | None, unit: str) -> str:
    if not _finite(value):
        return "–"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


STATUS_STYLE = {"running": "bold green", "starting": "yellow", "completed": "bold cyan",
                "stopped": "yellow", "failed": "bold red", "unreadable": "bold red"}


# Names, paths, messages and answers come from users and models: they may hold "[/]" or
# "[old]". They are never put into markup strings (no escaping round-trips every text in
# both Rich's and Textual's dialects); screens build Content (or, for table cells, Rich
# Text) from literal pieces instead.
def status_text(status: str) -> Text:
    """A status for a DataTable cell (tables render Rich Text)."""
    return Text(str(status), style=STATUS_STYLE.get(status, ""))


def status_content(status: str) -> Content:
    return Content.styled(str(status), STATUS_STYLE.get(status, ""))


def styled(*parts: str | tuple[str, str] | Content) -> Content:
    """Literal text from pieces for a Static: a str as it is, a (text, style) pair styled."""
    return Content.assemble(*((str(p[0]), p[1]) if isinstance(p, tuple) else p if isinstance(p, Content)
                              else str(p) for p in parts))


def run_title(name: str, status: str, step: int, total: int, loss_value: float | None) -> str:
    """A run's state in a few words for the terminal (or tmux pane) title, so a glance at
    the tab or the status bar says how training goes: "tunewiz: assistant 340/1200 loss 0.82"."""
    parts = [f"tunewiz: {name}"]
    if status != "running":
        parts.append(str(status))
    if total:
        parts.append(f"{step}/{total}")
    if _finite(loss_value):
        parts.append(f"loss {loss_value:.2f}")
    # A title is one line of plain text: control characters from a name would end it early.
    return "".join(c for c in " ".join(parts) if c.isprintable())
