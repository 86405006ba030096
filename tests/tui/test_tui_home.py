"""Home: the runs table, and the ways from it into the monitor, convert & merge, chat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunewiz.tui.app import TunewizApp
from tunewiz.tui.services.engine_cli import EngineCli

from support.tui import (MessageLog, convert_finished, monitor_drew_the_end, painted, runs_listed, screen_text,
                         wait_for)
from support import FAKE_ENGINE
from support.recorded_runs import T0, recorded_run, sample_runs, step

@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    monkeypatch.chdir(tmp_path)
    return sample_runs(tmp_path / "work_dirs")


def make_app(root: Path) -> TunewizApp:
    return TunewizApp(root, engine=EngineCli(prefix=FAKE_ENGINE, output_dir=str(root)), cursor_blink=False)


class PaintOnceLoaded(MessageLog):
    """Logs Home's RunsLoaded and, once armed, paints the screen at the first message
    dispatched after the next RunsLoaded (its handler has filled the table by then): the
    moment a terminal's repaint can land before the table's own idle work, when a table that
    measures its columns only then paints its rows at the old widths and keeps that paint."""

    def __init__(self, app):
        from tunewiz.tui.screens.home import RunsLoaded

        super().__init__(RunsLoaded)
        self.app, self.armed, self.early = app, None, None

    def arm(self) -> int:
        self.armed, self.early = self.mark(), None
        return self.armed

    def __call__(self, message) -> None:
        if self.armed is not None and len(self.seen) > self.armed and self.early is None:
            self.early = screen_text(self.app)
        super().__call__(message)


async def test_home_lists_runs_and_attaches(runs, tmp_path):
    app = make_app(tmp_path / "work_dirs")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: runs_listed(app.screen, "assistant-20251122-080000", "pretrain-20251122-070000"))
        text = await painted(pilot)
        assert "assistant-20251122-080000" in text and "pretrain-20251122-070000" in text
        assert "completed" in text and "40/40" in text and "0.0500" in text
        assert "failed" in text
        await pilot.press("enter")  # the newest run is selected first
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen))
        text = await painted(pilot)
        assert "Training completed" in text and "I am Alice's assistant." in text
        await pilot.press("q")
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen))
        text = await painted(pilot)
        assert "Failed" in text and "data/x.jsonl:7: no text" in text and "fix the record" in text


async def test_a_new_run_with_a_longer_name_shows_whole_at_once(runs, tmp_path):
    from tunewiz.tui.screens.home import RunsLoaded

    app = make_app(tmp_path / "work_dirs")
    log = PaintOnceLoaded(app)
    async with app.run_test(size=(100, 24), message_hook=log) as pilot:
        await wait_for(pilot, lambda: runs_listed(app.screen, "assistant-20251122-080000"))
        # A run started while Home is open, with a name wider than the run column so far.
        longer = recorded_run(tmp_path / "work_dirs", "assistant-with-a-longer-name", "20251122-090000",
                              [step(1, 40, 3.0), {"t": T0 + 2, "type": "done", "status": "completed", "path": None}],
                              {"status": "completed"})
        os.utime(longer, (T0 + 200, T0 + 200))
        since = log.arm()
        await pilot.press("r")
        await log.wait(pilot, RunsLoaded, since=since)
        assert log.early is not None
        text = await painted(pilot)
        # Whole now, not only after Home's next refresh tick five seconds on.
        assert "assistant-with-a-longer-name-20251122-090000" in text, text


async def test_convert_and_merge_then_offers_chat(runs, tmp_path):
    app = make_app(tmp_path / "work_dirs")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: runs_listed(app.screen, "assistant-20251122-080000"))
        await pilot.press("m")
        await wait_for(pilot, lambda: convert_finished(app.screen))
        text = await painted(pilot)
        assert "Done:" in text and "$ tunewiz merge demo" in text and "merge weights: 100%|###| 3/3" in text
        assert "chat with it" in text
        await pilot.press("r")  # running it again is safe
        await wait_for(pilot, lambda: convert_finished(app.screen))
        assert app.screen.succeeded
    assert (runs["done"] / "adapter" / "adapter_config.json").is_file()
    assert (runs["done"] / "merged" / "config.json").is_file()


async def test_no_runs_opens_the_wizard_from_the_cli_entry(tmp_path, monkeypatch):
    from tunewiz.tui import app as app_module

    monkeypatch.chdir(tmp_path)
    opened = {}

    def fake_run(self):
        opened["wizard"] = self.open_wizard

    monkeypatch.setattr(app_module.TunewizApp, "run", fake_run)
    app_module.open_app(tmp_path / "work_dirs")
    assert opened == {"wizard": True}


async def test_convert_and_merge_refuses_a_run_that_has_not_finished(runs, tmp_path):
    import socket

    start = {"t": T0, "type": "start", "name": "x", "config": {}, "world_size": 1, "total_steps": 40,
             "model": "demo", "params": 1, "trainable_params": 1}
    # Alive (this test's own pid) and mid-way: the newest run, so the first row.
    running = recorded_run(tmp_path / "work_dirs", "live", "20251122-090000", [start, step(1, 40, 3.0)],
                           {"status": "running", "pid": os.getpid(), "host": socket.gethostname()})
    os.utime(running, (T0 + 200, T0 + 200))
    app = make_app(tmp_path / "work_dirs")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: runs_listed(app.screen, "live-20251122-090000"))
        await pilot.press("m")
        await wait_for(pilot, lambda: app.screen.refused.startswith("live-"))
        text = " ".join((await painted(pilot)).split())  # the hint may wrap
        assert "still running" in text and "step 1/40" in text and "once it has finished" in text
        await pilot.press("down", "down", "m")        # the failed run
        await wait_for(pilot, lambda: "failed" in app.screen.refused)
        text = await painted(pilot)
        assert "nothing finished to convert" in text and "Runs in" in text and "Convert & merge" not in text
    assert not (running / "adapter").exists() and not (runs["failed"] / "adapter").exists()
