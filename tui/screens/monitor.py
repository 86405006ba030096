"""The run monitor: progress, loss and lr, throughput and memory, eval answers, log tail.

A thread worker follows events.jsonl from a byte offset and posts ``RunProgressed``; those
messages replace each other in the queue (``can_replace``), so a burst of 10k events becomes
one repaint. The chart redraws at most once a second. Leaving never stops the run.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, ProgressBar, RichLog, Static
from textual.worker import get_current_worker

from tunewiz.engine.contract.progress_meter import SURE_AFTER, describe_progress
from tunewiz.engine.contract.run_summary import CONVERTIBLE

from textual.content import Content

from ..formatting import eta, loss, run_title, status_content, styled
from ..services.engine_cli import EngineCommandFailed
from ..services.run_follower import RunFollower, RunView
from ..widgets.monitor.charts import LossChart, LrStrip, MetricStrip
from ..widgets.monitor.eval_timeline import EvalTimeline

POLL_S = 0.25


class RunProgressed(Message):
    """Something new in the run; carries no data (the view is read under the follower's lock)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunProgressed)


class StopRequested(Message):
    def __init__(self, problem: str = ""):
        super().__init__()
        self.problem = problem


def outcome_text(view: RunView) -> Content:
    s = view.summary
    if s.status == "completed":
        where = f" → {_inside(view.run, str(s.final_path))}" if s.final_path else ""
        return styled(("Training completed", "bold cyan"), f" at step {s.step}{where}.  ", ("m", "bold"),
                      " convert & merge · ", ("c", "bold"), " chat")
    if s.status == "stopped":
        return styled(("Stopped", "bold yellow"), f" at step {s.step} (checkpoint saved).  ", ("m", "bold"),
                      " convert & merge what was trained")
    err = s.error if isinstance(s.error, dict) else {}
    text = styled(("Failed", "bold red"), f" ({err.get('kind', 'unknown')}): {err.get('msg', 'no error message')}")
    if err.get("hint"):
        text = styled(text, "\n", ("hint:", "bold"), f" {err['hint']}")
    return text


def _epoch(value) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "?"


def _inside(run: Path, path: str) -> str:
    """A path inside the run directory, shown relative to it (the title already names the run)."""
    try:
        return str(Path(path).relative_to(run))
    except ValueError:
        return path


class MonitorScreen(Screen):
    BINDINGS = [
        # Short words: every key must fit one 80-column footer.
        Binding("s", "stop", "stop & save"),
        Binding("q,escape", "leave", "leave (run goes on)"),
        Binding("m", "merge", "convert & merge"),
        Binding("c", "chat", "chat"),
    ]

    def __init__(self, run: Path):
        super().__init__()
        self.sub_title = ""     # the header shows the run's state (the title), whole at 80 columns
        self.run = run
        self.follower = RunFollower(run)
        self.drawn_version = -1
        self.chart_version = -1
        self.logs_shown = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="mon-title")
        with Horizontal(id="mon-progress"):
            yield ProgressBar(total=None, show_eta=False, id="mon-bar")
            yield Static(id="mon-numbers")
        yield Static(id="mon-outcome")
        with Horizontal(id="mon-main"):
            with Vertical(id="mon-left"):
                yield LossChart(id="mon-chart")
                yield LrStrip(id="mon-lr")
                yield MetricStrip("tok/s", "tok/s", id="mon-tokens")
                yield MetricStrip("mem", "GiB", id="mon-mem")
            yield EvalTimeline(id="mon-evals")
        yield RichLog(id="mon-log", max_lines=200, wrap=False, markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#mon-title", Static).update(styled((self.run.name, "bold"), "  starting…"))
        self.query_one("#mon-outcome").display = False
        self.follow()
        self.set_interval(1.0, self.redraw_chart)

    @work(thread=True, exclusive=True, group="follow")
    def follow(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            if self.follower.poll():
                self.post_message(RunProgressed())
            if self.follower.view.finished:
                return
            time.sleep(POLL_S)

    def on_run_progressed(self, _: RunProgressed) -> None:
        with self.follower.lock:
            view = self.follower.view
            if view.version == self.drawn_version:
                return
            self.drawn_version = view.version
            self.draw(view)
        if view.finished:
            self.redraw_chart()

    def draw(self, view: RunView) -> None:
        s = view.summary
        title = styled((self.run.name, "bold"), "  ", status_content(s.status))
        if view.start:
            model = view.start.get("model") or ""
            title = styled(title, "  ", (f"{model} · world {view.start.get('world_size', 1)}", "dim"))
        self.query_one("#mon-title", Static).update(title)
        self.show_in_terminal_title(run_title(s.name or self.run.name, s.status, s.step, s.total, s.loss))
        bar = self.query_one("#mon-bar", ProgressBar)
        if view.progress and not view.steps:
            p = view.progress
            bar.update(total=p.get("total") or None, progress=p.get("done") or 0)
            numbers = describe_progress(p)
        else:
            bar.update(total=s.total or None, progress=s.step)
            # The first steps (warm-up, compilation) say little about the pace: a guess.
            left = eta(s.eta_s, guess=len(view.steps) < SURE_AFTER) if s.status == "running" else "–"
            # Most telling first: at 80 columns the end of the line is what gets cut.
            numbers = f"step {s.step}/{s.total or '?'} · loss {loss(s.loss)} · ETA {left} · epoch {_epoch(s.epoch)}"
        self.query_one("#mon-numbers", Static).update(Content(numbers))
        self.query_one("#mon-tokens", MetricStrip).show(view.tokens_per_s)
        self.query_one("#mon-mem", MetricStrip).show(view.mem_gib)
        self.query_one("#mon-evals", EvalTimeline).show(view.summary.evals)
        log = self.query_one("#mon-log", RichLog)
        new = view.log_count - self.logs_shown
        for line in view.logs[-new:] if new > 0 else []:
            log.write(line)
        self.logs_shown = view.log_count
        outcome = self.query_one("#mon-outcome", Static)
        outcome.display = view.finished
        if view.finished:
            outcome.update(outcome_text(view))

    def redraw_chart(self) -> None:
        with self.follower.lock:
            view = self.follower.view
            if view.version == self.chart_version:
                return
            self.chart_version = view.version
            steps, losses, lrs = list(view.steps), list(view.losses), list(view.lrs)
        self.query_one("#mon-chart", LossChart).redraw(steps, losses)
        self.query_one("#mon-lr", LrStrip).show(lrs)

    def show_in_terminal_title(self, text: str) -> None:
        """The app's title (the header) and the terminal's: OSC 2, which tmux makes the
        pane title, so the run can be watched from another window or a tab."""
        if text == self.app.title:
            return
        self.app.title = text
        driver = getattr(self.app, "_driver", None)   # the app's own output stream, in order
        if driver is not None and not self.app.is_headless:
            driver.write(f"\x1b]2;{text}\x07")

    def on_unmount(self) -> None:
        self.show_in_terminal_title(type(self.app).TITLE)

    def action_leave(self) -> None:
        self.workers.cancel_group(self, "follow")
        self.dismiss()

    def action_stop(self) -> None:
        if self.follower.view.finished:
            self.notify("the run has already ended")
            return
        self.notify("asking the run to checkpoint and stop…")
        self.request_stop()

    @work(thread=True, exclusive=True, group="stop")
    def request_stop(self) -> None:
        try:
            self.app.engine.stop(self.run)
            self.post_message(StopRequested())
        except (EngineCommandFailed, OSError) as e:
            self.post_message(StopRequested(getattr(e, "message", str(e))))

    def on_stop_requested(self, message: StopRequested) -> None:
        if message.problem:
            self.notify(f"stop failed: {message.problem}", severity="error", markup=False)
        else:
            self.notify("stop requested: the run saves a checkpoint, then exits")

    def action_merge(self) -> None:
        if self.follower.view.summary.status in CONVERTIBLE:
            self.app.open_convert(self.run)
        else:
            self.notify("convert & merge once the run has finished")

    def action_chat(self) -> None:
        self.app.open_chat(self.run)
