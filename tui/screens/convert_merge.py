"""Convert & merge: one action turns a finished run into a model you can chat with.

`tunewiz convert RUN <run>/adapter` (or `<run>/hf` for full fine-tuning, which needs no
merge), then `tunewiz merge BASE <run>/adapter <run>/merged`. Both are CLI subprocesses
that write their folders atomically, so running this again is safe.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, ProgressBar, RichLog, Static

from ..formatting import styled
from ..services.engine_cli import EngineCommandFailed


class StepStarted(Message):
    def __init__(self, index: int, argv: list[str]):
        super().__init__()
        self.index, self.argv = index, argv


class OutputLine(Message):
    def __init__(self, line: str):
        super().__init__()
        self.line = line


class ConvertMergeFinished(Message):
    def __init__(self, problem: str = ""):
        super().__init__()
        self.problem = problem


def plan(run: Path) -> list[list[str]]:
    """The CLI commands, in order, that produce the run's chat-ready model (the same plan
    `tunewiz export RUN` runs)."""
    from tunewiz.engine.contract.rundir import output_plan

    return output_plan(run)


# A progress bar ("Loading weights:  45%|████  | 120/272") redraws itself many times, and the
# stream gives each redraw as a line (services/engine_cli.py). Only its finished state goes
# into the log, so the commands and their own lines stay in view; the moving bar shows in
# the result line while the work runs.
PROGRESS_BAR = re.compile(r"\d{1,3}%\|")


def is_unfinished_bar(line: str) -> bool:
    return PROGRESS_BAR.search(line) is not None and "100%|" not in line


def _short(arg: str) -> str:
    """Paths relative to the working directory when that is shorter: the log stays readable."""
    if "/" not in arg:
        return arg
    import os

    relative = os.path.relpath(arg)
    return relative if len(relative) < len(arg) and not relative.startswith("../..") else arg


class ConvertMergeScreen(Screen):
    BINDINGS = [
        Binding("escape,q", "leave", "back"),
        Binding("c", "chat", "chat"),
        Binding("v", "compare", "base vs tuned"),
        Binding("r", "again", "run again"),
    ]

    def __init__(self, run: Path):
        super().__init__()
        self.run = run
        self.finished = False
        self.succeeded = False
        self.last_logged = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(styled(("Convert & merge", "bold"), f" {self.run.name}"), id="cm-title")
        yield ProgressBar(total=1, show_eta=False, id="cm-bar")
        # Lines wrap at the log's own width, which keeps room for the scrollbar from the
        # start (scrollbar-gutter in app.tcss): rendered wider, their ends would be hidden.
        yield RichLog(id="cm-log", wrap=True, markup=False, min_width=1)
        yield Static(id="cm-result")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.action_again()

    def action_again(self) -> None:
        if self.workers and any(w.group == "convert-merge" and w.is_running for w in self.workers):
            return
        self.finished = self.succeeded = False
        self.query_one("#cm-result", Static).update("working…")
        self.convert_and_merge()

    @work(exclusive=True, group="convert-merge")
    async def convert_and_merge(self) -> None:
        try:
            commands = plan(self.run)
        except Exception as e:  # a broken config.yaml: say so instead of crashing the screen
            self.post_message(ConvertMergeFinished(str(getattr(e, "msg", e))))
            return
        self.query_one("#cm-bar", ProgressBar).update(total=len(commands), progress=0)
        for index, args in enumerate(commands):
            self.post_message(StepStarted(index, args))
            try:
                async for line in self.app.engine.stream(*args):
                    self.post_message(OutputLine(line))
            except EngineCommandFailed as e:
                self.post_message(ConvertMergeFinished(e.message))
                return
        self.post_message(ConvertMergeFinished())

    def on_step_started(self, message: StepStarted) -> None:
        self.query_one("#cm-bar", ProgressBar).update(progress=message.index)
        shown = [_short(arg) for arg in message.argv]
        self.last_logged = f"$ tunewiz {' '.join(shown)}"
        self.query_one("#cm-log", RichLog).write(self.last_logged)

    def on_output_line(self, message: OutputLine) -> None:
        result = self.query_one("#cm-result", Static)
        if is_unfinished_bar(message.line):
            if not self.finished:
                result.update(f"working… {message.line}")
            return
        if not self.finished:
            result.update("working…")
        if message.line != self.last_logged:   # a bar's final state is often drawn twice
            self.last_logged = message.line
            self.query_one("#cm-log", RichLog).write(message.line)

    def on_convert_merge_finished(self, message: ConvertMergeFinished) -> None:
        self.finished = True
        result = self.query_one("#cm-result", Static)
        if message.problem:
            result.update(styled(("Failed:", "bold red"), f" {message.problem}\n", ("r", "bold"), " try again · ",
                                 ("esc", "bold"), " back"))
            return
        self.succeeded = True
        bar = self.query_one("#cm-bar", ProgressBar)
        bar.update(progress=bar.total)
        from tunewiz.engine.contract.rundir import chat_model

        result.update(styled(("Done:", "bold green"), f" {chat_model(self.run)}\n", ("c", "bold"), " chat with it · ",
                             ("v", "bold"), " side by side with the base model · ", ("esc", "bold"), " back"))

    def action_chat(self) -> None:
        if self.succeeded:
            self.app.open_chat(self.run)

    def action_compare(self) -> None:
        if self.succeeded:
            self.app.open_chat(self.run, side_by_side=True)

    def action_leave(self) -> None:
        self.dismiss()
