"""The model's answers to the fixed eval prompts, newest first: watch it learn."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static


def render_eval(ev: dict) -> Text:
    text = Text()
    text.append(f"step {ev.get('step', '?')}\n", style="bold")
    samples = ev.get("samples")
    for sample in samples if isinstance(samples, list) else []:
        if not isinstance(sample, dict):
            continue
        text.append("› ", style="dim")
        text.append(str(sample.get("input", "")), style="cyan")
        text.append("\n  ")
        text.append(str(sample.get("output", "")).strip() or "(empty)")
        text.append("\n")
    return text


class EvalTimeline(VerticalScroll):
    DEFAULT_CSS = """
    EvalTimeline > .eval-entry { margin: 0 0 1 0; }
    EvalTimeline > .eval-empty { color: $text-muted; }
    """

    def on_mount(self) -> None:
        self.shown = 0
        self.mount(Static("answers to the eval prompts appear here", classes="eval-empty"))

    def show(self, evals: list[dict]) -> None:
        if len(evals) <= self.shown:
            return
        if self.shown == 0:
            self.query(".eval-empty").remove()
        # Newest first: each new answer goes on top, so the latest behaviour is what one sees.
        new = [Static(render_eval(ev), classes="eval-entry") for ev in evals[self.shown:]]
        entries = self.query(".eval-entry")
        self.mount_all(list(reversed(new)), before=entries.first() if entries else None)
        self.shown = len(evals)
