"""Text the TUI did not write is shown literally: run names, paths, error messages, eval
answers and chat text holding Rich / Textual markup ("[/]", "[old]", "[b]...") never crash a
screen (MarkupError) and are never swallowed as styles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunewiz.tui.app import TunewizApp
from tunewiz.tui.screens.chat import ChatScreen
from tunewiz.tui.services.engine_cli import EngineCli

from tunewiz.engine.contract.config import Config, dump_yaml

from support.recorded_runs import T0, step
from support.tui import MessageLog, convert_finished, monitor_drew_the_end, painted, runs_listed, wait_for
from tunewiz.tui.screens.wizard.dataset_step import AssistantSetWritten
from tunewiz.tui.screens.wizard.model_step import FoldersFound
from tunewiz.tui.widgets.chat.chat_column import Bubble
from support import FAKE_ENGINE

START = {"t": T0, "type": "start", "name": "x", "config": {}, "world_size": 1, "total_steps": 4,
         "model": "m[/]del[old]", "params": 1, "trainable_params": 1}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNEWIZ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "work[old]dirs"


def recorded_run(root: Path, name: str, stamp: str, events: list[dict], state: dict) -> Path:
    """A run folder whose name holds markup (renamed by hand, or older than name checks)."""
    run = root / f"{name}-{stamp}"
    (run / "logs").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(Config(name="x", output_dir=str(root))))
    (run / "events.jsonl").write_text("".join(json.dumps({"v": 1, **e}) + "\n" for e in events))
    (run / "state.json").write_text(json.dumps(state))
    return run


def make_app(root: Path, **kw) -> TunewizApp:
    return TunewizApp(root, engine=EngineCli(prefix=FAKE_ENGINE, output_dir=str(root)), cursor_blink=False, **kw)


def failed_run(root: Path) -> Path:
    return recorded_run(root, "r[old]", "20251122-080000",
                        [START, step(1, 4, 2.5),
                         {"t": T0 + 2, "type": "log", "level": "info", "msg": "read [/] data[b]"},
                         {"t": T0 + 3, "type": "eval", "step": 1,
                          "samples": [{"input": "who [/]are you", "output": "I am [old]Alice[/]'s"}]},
                         {"t": T0 + 4, "type": "error", "kind": "data", "msg": "bad [/] record [red]x",
                          "hint": "fix [b]it[/b]"},
                         {"t": T0 + 5, "type": "done", "status": "failed", "path": None}],
                        {"status": "failed"})


async def test_home_and_monitor_show_markup_literally(root):
    run = failed_run(root)
    os.utime(run, (T0, T0))
    app = make_app(root)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: runs_listed(app.screen, "r[old]-20251122-080000"))
        text = await painted(pilot)
        assert "r[old]-20251122-080000" in text
        assert "work[old]dirs" in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen))
        text = await painted(pilot)
        assert "Failed" in text
        for literal in ("r[old]-20251122-080000", "m[/]del[old]", "bad [/] record [red]x", "fix [b]it[/b]",
                        "I am [old]Alice[/]'s", "who [/]are you", "read [/] data[b]"):
            assert literal in text, literal


async def test_convert_screen_shows_a_markup_error_literally(root):
    run = failed_run(root)
    (run / "config.yaml").write_text("name: [/]\n  broken: [old]\n")  # the plan cannot read it
    app = make_app(root)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None) is not None)
        app.open_convert(run)
        await wait_for(pilot, lambda: convert_finished(app.screen))
        text = await painted(pilot)
        assert not app.screen.succeeded and "Failed:" in text
        assert "Convert & merge r[old]-20251122-080000" in text
        assert "config.yaml" in text


class MarkupChat(ChatScreen):
    """A chat with a recorded answer that holds markup, instead of live model servers."""

    def start_servers(self) -> None:
        self.ready = [True] * len(self.targets())
        self.set_status()
        column = self.columns()[0]
        column.add_bubble("say [/] and [old]", "user")
        column.add_bubble("here: [/] [old] [b]bold?[/b]", "assistant")


async def test_chat_shows_markup_literally(root):
    run = recorded_run(root, "c[old]", "20251122-080000", [START], {"status": "completed"})
    (run / "merged").mkdir()
    (run / "merged" / "config.json").write_text("{}")
    app = make_app(root)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = MarkupChat(run=run)
        app.push_screen(screen)
        await wait_for(pilot, lambda: app.screen is screen and len(screen.query(Bubble)) == 2)
        text = await painted(pilot)
        assert "here: [/] [old] [b]bold?[/b]" in text and "say [/] and [old]" in text


async def test_wizard_write_it_takes_any_name(root):
    app, log = make_app(root, open_wizard=True), MessageLog(AssistantSetWritten)
    async with app.run_test(size=(100, 32), message_hook=log) as pilot:
        from test_tui_wizard import goto

        for name in ("ModelStep", "PresetStep"):
            await goto(pilot, name)
            await pilot.press("enter")
        await goto(pilot, "DatasetStep")
        owner = app.screen.query_one("#data-owner")
        owner.value = "[/]Zoë[old]"
        app.screen.generate_set()
        assert (await log.wait(pilot, AssistantSetWritten)).path == "data/assistant.json"
        assert "wrote data/assistant.json" in await painted(pilot)
    assert "[/]Zoë[old]" in Path("data/assistant.json").read_text(encoding="utf-8")


async def test_model_folders_with_markup_in_their_names_are_listed_literally(root, tmp_path):
    folder = tmp_path / "models" / "m[old]x[b]"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    app, log = make_app(root, open_wizard=True), MessageLog(FoldersFound)
    async with app.run_test(size=(220, 32), message_hook=log) as pilot:
        from test_tui_wizard import goto

        await goto(pilot, "ModelStep")
        assert str(folder) in (await log.wait(pilot, FoldersFound)).folders
        text = await painted(pilot)
        assert str(folder) in text
