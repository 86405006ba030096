"""At 80x24 everything that matters is on screen: every footer key, the loss while
training, each setting's whole help text, every character of the convert & merge log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from tunewiz.engine.contract.config import Config, dump_yaml
from tunewiz.engine.demo import write_sample_datasets
from tunewiz.tui.app import TunewizApp
from tunewiz.tui.services.engine_cli import EngineCli
from tunewiz.tui.services.gpus import Gpu

from support.tui import (convert_finished, machine_with, monitor_shows, painted, runs_listed, screen_text, wait_for,
                         wait_for_screen)
from support import FAKE_ENGINE

SIZE = (80, 24)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_sample_datasets(tmp_path / "data", "Alice")
    machine_with(monkeypatch, [Gpu(0, "NVIDIA H100 80GB HBM3", 81559, 4)])
    return EngineCli(prefix=FAKE_ENGINE, output_dir=str(tmp_path / "work_dirs"))


def launch(engine: EngineCli, tmp_path: Path, monkeypatch, steps: int, delay: float) -> Path:
    monkeypatch.setenv("FAKE_ENGINE_STEPS", str(steps))
    monkeypatch.setenv("FAKE_ENGINE_DELAY", str(delay))
    config = tmp_path / "assistant.yaml"
    config.write_text(dump_yaml(Config(name="assistant", output_dir=engine.output_dir)))
    return engine.launch(config)


def cells(row: str, x: int, width: int) -> str:
    """The characters of a screen row in columns x .. x+width (wide characters take two)."""
    out, column = [], 0
    for char in row:
        if x <= column < x + width:
            out.append(char)
        column += cell_len(char)
    return "".join(out)


def region_text(app, widget) -> list[str]:
    """The screen's characters inside a widget's region, row by row."""
    region = widget.region
    rows = screen_text(app).splitlines()[region.y: region.y + region.height]
    return [cells(row, region.x, region.width) for row in rows]


def footer_problems(app) -> list[str]:
    """Each key the footer offers must show whole: its key and its words (one per action)."""
    footer = screen_text(app).splitlines()[-1]
    problems, seen = [], set()
    for key, active in app.screen.active_bindings.items():
        binding = active.binding
        if not binding.show or binding.action in seen or active.node is app:
            continue
        seen.add(binding.action)
        shown = app.get_key_display(binding)
        if f"{shown} {binding.description}" not in footer:
            problems.append(f"{shown} {binding.description}")
    return problems


async def test_every_footer_key_shows_on_every_screen(engine, tmp_path, monkeypatch):
    run = launch(engine, tmp_path, monkeypatch, steps=1200, delay=0.05)
    app = TunewizApp(engine.output_dir, engine=engine, attach=run)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.screen.follower.view.steps) > 30)
        await wait_for(pilot, lambda: footer_problems(app) == [])
        await pilot.press("q")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HomeScreen")
        await wait_for(pilot, lambda: runs_listed(app.screen, run.name))
        await wait_for(pilot, lambda: footer_problems(app) == [])
        engine.stop(run)
        app.open_convert(run)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConvertMergeScreen")
        await wait_for(pilot, lambda: footer_problems(app) == [])
        await pilot.press("escape")
        app.start_wizard()
        for step in ("ModelStep", "PresetStep", "DatasetStep", "LayoutStep", "ReviewStep"):
            await wait_for_screen(pilot, step)
            await wait_for(pilot, lambda: footer_problems(app) == [])
            if step != "ReviewStep":
                await pilot.press("ctrl+n")


async def test_the_monitor_header_shows_the_loss_while_training(engine, tmp_path, monkeypatch):
    run = launch(engine, tmp_path, monkeypatch, steps=1200, delay=0.05)
    app = TunewizApp(engine.output_dir, engine=engine, attach=run)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: monitor_shows(app.screen, lambda view: len(view.steps) > 3))
        await painted(pilot)
        header = " ".join(region_text(app, app.screen.query_one("#mon-progress")))
        assert re.search(r"loss \d+\.\d{4}", header), header
        assert re.search(r"step \d+/1200", header) and "ETA" in header
        engine.stop(run)


async def test_preset_help_texts_are_whole(engine):
    app = TunewizApp(engine.output_dir, engine=engine, open_wizard=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ModelStep")
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, "PresetStep")
        rows = list(app.screen.query("#preset-form FieldRow"))
        assert rows
        for row in rows:
            if not row.display:
                continue
            row.scroll_visible(animate=False, immediate=True)
            await pilot.pause()
            help_widget = row.query_one(".field-help")
            # Wrapped lines may break after a hyphen: compare the characters, not the spaces.
            shown = "".join("".join(region_text(app, help_widget)).split())
            assert shown == "".join(row.help_text.split()), (row.label, screen_text(app))


async def convert_a_finished_run(pilot, app, run: Path) -> None:
    """Wait for the run to complete, then convert and merge it from its screen."""
    await wait_for(pilot, lambda: "completed" in (run / "state.json").read_text())
    app.open_convert(run)
    await wait_for(pilot, lambda: convert_finished(app.screen))
    assert app.screen.succeeded


async def test_the_merge_log_wraps_without_losing_characters(engine, tmp_path, monkeypatch):
    run = launch(engine, tmp_path, monkeypatch, steps=5, delay=0.0)
    app = TunewizApp(engine.output_dir, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await convert_a_finished_run(pilot, app, run)
        log = app.screen.query_one("#cm-log")
        # Long lines, more of them than the log is high: the scrollbar shows up.
        lines = [f"line{i:02d}-" + "abcdefghij" * 9 + f"-end{i:02d}" for i in range(30)]
        for line in lines:
            log.write(line)
        await pilot.pause()
        shown = "".join(row.rstrip(" ▁▂▃▄▅▆▇█▏▕▎▍▌▋▊▉") for row in region_text(app, log))
        for line in lines[-5:]:
            assert line in shown


async def test_the_merge_log_keeps_a_progress_bar_s_last_state_only(engine, tmp_path, monkeypatch):
    """A bar redraws itself with \\r many times (loading weights): the log keeps its finished
    state once, so the commands stay in view on a small terminal."""
    run = launch(engine, tmp_path, monkeypatch, steps=5, delay=0.0)
    app = TunewizApp(engine.output_dir, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await convert_a_finished_run(pilot, app, run)
        lines = [strip.text.rstrip() for strip in app.screen.query_one("#cm-log").lines]
        bars = [line for line in lines if "%|" in line]
        assert bars == ["convert weights: 100%|###| 3/3", "merge weights: 100%|###| 3/3"], lines
        assert [line.split()[2] for line in lines if line.startswith("$ tunewiz")] == ["convert", "merge"]
        assert app.screen.query_one("#cm-log").max_scroll_y == 0   # all of it in view at 80 x 24
