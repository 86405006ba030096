"""What a first-time user meets at 80x24: recipes this machine cannot run, previews that
follow what was just written, and focus that can be seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewiz.tui.app import TunewizApp
from tunewiz.tui.services.engine_cli import EngineCli
from tunewiz.tui.services.gpus import Gpu

from support.tui import MessageLog, holds, machine_with, painted, pick_preset, until_shown, wait_for, wait_for_screen
from tunewiz.tui.screens.wizard.dataset_step import AssistantSetWritten, DataChecked, PreviewReady
from tunewiz.tui.screens.wizard.review_step import Launched, MemoryEstimated
from support import FAKE_ENGINE

H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 81559, 4)


def make_app(workdir: Path) -> TunewizApp:
    engine = EngineCli(prefix=FAKE_ENGINE, output_dir=str(workdir / "work_dirs"))
    return TunewizApp(engine.output_dir, engine=engine, open_wizard=True)


def shown(app, selector: str) -> str:
    """A widget's whole text, however it wraps on screen."""
    return str(app.screen.query_one(selector).render())


async def goto(pilot, name: str) -> None:
    await wait_for_screen(pilot, name)


def warned(screen, text: str) -> bool:
    """The Preset step shows a warning that holds text."""
    warning = screen.query_one("#preset-warning")
    return warning.display and text in holds(screen, "#preset-warning")


async def test_qlora_without_cuda_is_warned_in_preset_and_not_launched(workdir, monkeypatch):
    machine_with(monkeypatch, [])
    app, log = make_app(workdir), MessageLog(MemoryEstimated, Launched)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        await goto(pilot, "ModelStep")
        await pilot.press("ctrl+n")
        await goto(pilot, "PresetStep")
        await pick_preset(pilot, "sft-qlora")
        await wait_for(pilot, lambda: warned(app.screen, "QLoRA needs a CUDA GPU"))
        assert "QLoRA needs a CUDA GPU" in await until_shown(pilot, "QLoRA needs a CUDA GPU")
        assert "choose sft-lora" in shown(app, "#preset-warning")
        await pick_preset(pilot, "sft-lora")   # the warning goes with the recipe
        await wait_for(pilot, lambda: not app.screen.query_one("#preset-warning").display)
        assert "QLoRA needs" not in await painted(pilot)
        await pick_preset(pilot, "sft-qlora")
        for step in ("PresetStep", "DatasetStep", "LayoutStep"):
            await goto(pilot, step)
            await pilot.press("ctrl+n")
        await goto(pilot, "ReviewStep")
        await log.wait(pilot, MemoryEstimated)
        text = await painted(pilot)
        assert "no GPU here" in text and "RAM (CPU training)" not in text and "choose sft-lora" in text
        await pilot.press("ctrl+l")
        assert (await log.wait(pilot, Launched)).refused
        # The refusal takes the line beside the buttons, whole.
        assert "QLoRA needs a CUDA GPU; choose sft-lora" in (await painted(pilot)).splitlines()[-2]
        assert type(app.screen).__name__ == "ReviewStep"
    runs = [p for p in (workdir / "work_dirs").iterdir() if p.name.startswith("sft-qlora")]
    assert runs == []           # nothing was started


async def test_qlora_with_a_gpu_is_not_warned(workdir, monkeypatch):
    machine_with(monkeypatch, [H100])
    app = make_app(workdir)
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, "ModelStep")
        await pilot.press("ctrl+n")
        await goto(pilot, "PresetStep")
        await pick_preset(pilot, "sft-qlora")
        await wait_for(pilot, lambda: app.screen.gpus is not None)
        assert not app.screen.query_one("#preset-warning").display
        assert "QLoRA needs" not in await painted(pilot)


async def test_writing_the_assistant_set_refreshes_the_preview_of_the_same_path(tmp_path, monkeypatch):
    # A first run: no data yet, so the preset's data/assistant.json is missing until written.
    monkeypatch.chdir(tmp_path)
    app, log = make_app(tmp_path), MessageLog(DataChecked, AssistantSetWritten, PreviewReady)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        for step in ("ModelStep", "PresetStep"):
            await goto(pilot, step)
            await pilot.press("ctrl+n")
        await goto(pilot, "DatasetStep")
        assert app.screen.query_one("#data-path").value == "data/assistant.json"
        assert (await log.wait(pilot, DataChecked)).problems
        assert "no such file" in await until_shown(pilot, "no such file")
        owner = app.screen.query_one("#data-owner")
        owner.focus()
        await pilot.press(*"Bob", "enter")
        written = await log.wait(pilot, AssistantSetWritten)
        assert written.path == "data/assistant.json" and "wrote data/assistant.json" in await painted(pilot)
        # The same path, checked and previewed afresh: the file as it is now.
        assert (await log.wait(pilot, PreviewReady, since=log.seen.index(written))).report
        text = await painted(pilot)
        assert "first sample" in text and "no such file" not in text and "problem" not in text
        assert "samples · format conversation" in shown(app, "#data-status")
        await pilot.press("ctrl+n")      # and the step now accepts it
        await goto(pilot, "LayoutStep")
    assert "Bob" in (tmp_path / "data" / "assistant.json").read_text()


def background(widget):
    return widget.background_colors[1]


async def test_tab_in_the_preset_step_goes_to_a_field_that_takes_typing(workdir, monkeypatch):
    machine_with(monkeypatch, [H100])
    app = make_app(workdir)
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, "ModelStep")
        await pilot.press("ctrl+n")
        await goto(pilot, "PresetStep")
        assert app.focused.id == "preset-list"
        await pilot.press("tab")
        assert app.focused.id == "set-name"
        await pilot.press("end", *"-2")
        assert app.screen.query_one("#set-name").value == "assistant-2"


async def test_the_focused_layout_field_stands_out(workdir, monkeypatch):
    machine_with(monkeypatch, [H100])
    app = make_app(workdir)
    async with app.run_test(size=(80, 24)) as pilot:
        for step in ("ModelStep", "PresetStep", "DatasetStep"):
            await goto(pilot, step)
            await pilot.press("ctrl+n")
        await goto(pilot, "LayoutStep")
        focused, other = app.screen.query_one("#layout-nnodes"), app.screen.query_one("#layout-port")
        assert app.focused is focused
        await pilot.pause(0.1)
        a, b = background(focused), background(other)
        # A few percent of tint is not something one sees across a terminal: ask for more.
        distance = sum((x - y) ** 2 for x, y in zip(a.rgb, b.rgb)) ** 0.5
        assert distance > 60, (a, b)
        await pilot.press("tab")
        assert background(app.screen.query_one("#layout-rank")) == a    # focus moves, the mark with it
        assert background(focused) == b
