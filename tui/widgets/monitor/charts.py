"""The loss chart (with the learning rate on the right axis) and the small metric strips."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static
from textual_plotext import PlotextPlot


def downsample(xs: list, ys: list, points: int) -> tuple[list, list]:
    """At most ``points`` (x, y) pairs: a terminal chart is ~100 columns wide, so plotting
    100k steps would only cost time. Takes every k-th point and always keeps the last."""
    pairs = [(x, y) for x, y in zip(xs, ys) if isinstance(y, (int, float)) and math.isfinite(y)]
    if len(pairs) > points:
        stride = math.ceil(len(pairs) / points)
        pairs = pairs[::stride] + ([pairs[-1]] if (len(pairs) - 1) % stride else [])
    return [p[0] for p in pairs], [p[1] for p in pairs]


class LossChart(PlotextPlot):
    def redraw(self, steps: list[int], losses: list[float], lrs: list[float]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss (left) · lr (right)")
        width = max(self.size.width * 2, 40)
        xs, ys = downsample(steps, losses, width)
        if xs:
            plt.plot(xs, ys, marker="braille", label="loss", color="cyan")
        lx, ly = downsample(steps, lrs, width)
        if lx and any(ly):
            plt.plot(lx, ly, marker="braille", yside="right", color="orange")
        plt.xlabel("step")
        self.refresh()


class MetricStrip(Horizontal):
    """A labelled sparkline with the latest value: throughput and memory while training."""

    DEFAULT_CSS = """
    MetricStrip { height: 1; }
    MetricStrip > .strip-label { width: 7; color: $text-muted; }
    MetricStrip > Sparkline { width: 1fr; height: 1; }
    MetricStrip > .strip-value { width: 14; text-align: right; }
    """

    def __init__(self, label: str, unit: str, **kwargs):
        super().__init__(**kwargs)
        self.label, self.unit = label, unit

    def compose(self) -> ComposeResult:
        yield Static(self.label, classes="strip-label")
        yield Sparkline([], summary_function=max)
        yield Static("–", classes="strip-value")

    def show(self, values: list[float], width: int = 60) -> None:
        finite = [v for v in values[-width * 4:] if math.isfinite(v)]
        self.query_one(Sparkline).data = finite[-width:]
        from ...formatting import rate

        self.query_one(".strip-value", Static).update(rate(finite[-1], self.unit) if finite else "–")
