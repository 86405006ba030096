"""Helpers for the TUI tests: the screen as plain text (what a user reads), and waiting."""

from __future__ import annotations

import io
import os
import time

from rich.console import Console

# Every wait ends as soon as its condition holds; the timeout only stops a hung test. A busy
# 2-core machine can take several times as long as an idle one, so each timeout written in a
# test is multiplied by this (TUNEWIZ_TEST_PATIENCE=1 for the written figures).
PATIENCE = float(os.environ.get("TUNEWIZ_TEST_PATIENCE", "4"))


def screen_text(app) -> str:
    """The current screen rendered as text, the way capture-pane would show it."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def wait_for(pilot, predicate, timeout: float = 10.0, interval: float = 0.05):
    """Pump the app until predicate() is true; fail with the screen text otherwise."""
    deadline = time.monotonic() + timeout * PATIENCE
    while time.monotonic() < deadline:
        await pilot.pause(interval)
        if predicate():
            return
    raise AssertionError(f"timed out waiting; the screen shows:\n{screen_text(pilot.app)}")


async def painted(pilot) -> str:
    """The screen as text once the app has handled what is queued and repainted: what a test
    reads after it has waited on state."""
    await pilot.pause()
    return screen_text(pilot.app)


async def until_shown(pilot, text: str) -> str:
    """Wait until the screen as painted shows text, then the screen. For what a step shows
    right after it opens: its first full paint can come a frame after the state a test
    waited on (seen once on a busy machine: a blank body under the header)."""
    await wait_for(pilot, lambda: text in screen_text(pilot.app))
    return screen_text(pilot.app)


class MessageLog:
    """The messages of these kinds the app dispatches: give it to run_test as message_hook,
    then wait for the message a worker posts instead of for the text its handler paints."""

    def __init__(self, *kinds: type):
        self.kinds, self.seen = kinds, []

    def __call__(self, message) -> None:
        if isinstance(message, self.kinds):
            self.seen.append(message)

    def mark(self) -> int:
        """Where the log is now: wait(..., since=mark) takes only messages that come later."""
        return len(self.seen)

    async def wait(self, pilot, kind: type, where=lambda message: True, since: int = 0,
                   timeout: float = 10.0):
        """The first message of kind (for which where(message) holds) after `since`, once
        its handler has run."""
        def found():
            return next((m for m in self.seen[since:] if isinstance(m, kind) and where(m)), None)

        await wait_for(pilot, lambda: found() is not None, timeout)
        await pilot.pause()
        return found()


def holds(screen, selector: str) -> str:
    """What a Static on the screen holds, as its handler set it (markup and all), not how it
    is painted: the state to wait on for what a synchronous handler says."""
    widgets = screen.query(selector)
    return str(widgets.first().content) if widgets else ""


def on_screen(app, name: str) -> bool:
    return type(app.screen).__name__ == name


async def wait_for_screen(pilot, name: str, timeout: float = 10.0) -> None:
    """Until the screen of that class is on top and mounted (its on_mount has run), and what
    mounting it queued has been handled."""
    await wait_for(pilot, lambda: on_screen(pilot.app, name) and pilot.app.screen.is_mounted, timeout)
    await pilot.pause()


def monitor_shows(screen, condition) -> bool:
    """The monitor has drawn a view of its run for which condition(view) holds: a condition
    on the screen's own follower, not on text that may scroll away."""
    follower = getattr(screen, "follower", None)
    if follower is None:
        return False
    with follower.lock:
        return screen.drawn_version == follower.view.version and condition(follower.view)


def monitor_drew_the_end(screen) -> bool:
    """The monitor has read its run to the final event and drawn that state."""
    return monitor_shows(screen, lambda view: view.finished)


def runs_listed(screen, *names: str) -> bool:
    """Home has loaded its runs table, with these runs in it."""
    rows = getattr(screen, "rows", None)
    return rows is not None and set(names) <= {row.name for row in rows.values()}


def convert_finished(screen) -> bool:
    """Convert & merge has run its commands to the end (done or failed)."""
    return type(screen).__name__ == "ConvertMergeScreen" and screen.finished


WIZARD_GPU_STEPS = ("preset_step", "layout_step", "review_step")


def machine_with(monkeypatch, gpus: list) -> None:
    """The wizard's steps see these GPUs (tui.services.gpus.Gpu rows; [] for a CPU machine)."""
    for step in WIZARD_GPU_STEPS:
        monkeypatch.setattr(f"tunewiz.tui.screens.wizard.{step}.detect_gpus", lambda: list(gpus))


async def pick_preset(pilot, stem: str) -> None:
    """Highlight a preset on the Preset step with the keyboard, as a user would, and wait
    until the step took it."""
    options = pilot.app.screen.query_one("#preset-list")
    ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
    options.focus()
    await pilot.press("home", *["down"] * ids.index(stem))
    await wait_for(pilot, lambda: pilot.app.screen.state.preset == stem)
