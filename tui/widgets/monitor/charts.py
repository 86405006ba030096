"""The loss chart, the learning rate on its own strip, and the small metric strips."""

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
    """The loss alone: a second series on a right-hand axis gets rescaled to the same height,
    and a nearly flat learning rate then draws as a steep line that reads like the loss."""

    def redraw(self, steps: list[int], losses: list[float]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        xs, ys = downsample(steps, losses, max(self.size.width * 2, 40))
        if xs:
            plt.plot(xs, ys, marker="braille", color="cyan")
        plt.xlabel("step")
        self.refresh()


BARS = "▁▂▃▄▅▆▇█"


def bars_from_zero(values: list[float], width: int) -> str:
    """One bar per column, scaled from 0 to the peak (not from the lowest value to the peak,
    as Sparkline does): a constant series is a flat row, a halving is half the height."""
    finite = [v for v in values if math.isfinite(v) and v >= 0]
    if not finite or width <= 0:
        return ""
    if len(finite) > width:   # one value per column, the last one last
        finite = [finite[c * (len(finite) - 1) // (width - 1)] for c in range(width)] if width > 1 else finite[-1:]
    peak = max(finite) or 1.0
    return "".join(BARS[min(len(BARS) - 1, round(v / peak * (len(BARS) - 1)))] for v in finite)


class LrStrip(Horizontal):
    """The learning rate on its own strip: its shape over the run (warm-up, decay) and its value."""

    DEFAULT_CSS = """
    LrStrip { height: 1; }
    LrStrip > .strip-label { width: 7; color: $text-muted; }
    LrStrip > .lr-bars { width: 1fr; color: $warning; }
    LrStrip > .strip-value { width: 14; text-align: right; }
    """

    def compose(self) -> ComposeResult:
        yield Static("lr", classes="strip-label")
        yield Static("", classes="lr-bars")
        yield Static("–", classes="strip-value")

    def show(self, lrs: list[float]) -> None:
        bars = self.query_one(".lr-bars", Static)
        bars.update(bars_from_zero(lrs, bars.size.width or 40))
        last = next((v for v in reversed(lrs) if math.isfinite(v)), None)
        self.query_one(".strip-value", Static).update("–" if last is None else f"{last:.2e}")


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
