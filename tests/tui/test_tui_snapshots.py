"""SVG snapshots of every screen at 80x24 (and the main ones at 120x40).

Everything that could differ between machines or runs is pinned: the time zone, the
runs' timestamps, the GPUs and model folders found, cursor blinking, and paths (the tests
run in a temporary folder with relative paths).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tunewiz.engine.demo import write_sample_datasets
from tunewiz.tui.app import TunewizApp
from tunewiz.tui.screens.chat import ChatScreen
from tunewiz.tui.services import model_folders
from tunewiz.tui.services.engine_cli import EngineCli
from tunewiz.tui.services.gpus import Gpu

from support.recorded_runs import sample_runs
from support.tui import convert_finished, holds, machine_with, monitor_drew_the_end, runs_listed, wait_for, wait_for_screen
from tunewiz.tui.widgets.chat.chat_column import Bubble
from support import FAKE_ENGINE

SMALL, LARGE = (80, 24), (120, 40)


@pytest.fixture
def pinned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(model_folders, "demo_folder", lambda: None)
    monkeypatch.setattr("tunewiz.tui.screens.wizard.model_step.find_model_folders",
                        lambda: [Path("models/internlm2-chat-1_8b"), Path("models/qwen2-7b-instruct")])
    gpus = [Gpu(0, "NVIDIA H100 80GB HBM3", 81559, 4), Gpu(1, "NVIDIA H100 80GB HBM3", 81559, 30112)]
    machine_with(monkeypatch, gpus)
    write_sample_datasets(Path("data"), "Alice")
    return sample_runs(Path("work_dirs"))


def make_app(**kwargs) -> TunewizApp:
    return TunewizApp("work_dirs", engine=EngineCli(prefix=FAKE_ENGINE, output_dir="work_dirs"),
                      cursor_blink=False, **kwargs)


def wizard_at(step: str, ready):
    """run_before: press Enter through the wizard up to the named step, then wait until
    ready(screen): the step's workers have answered."""
    async def run_before(pilot) -> None:
        order = ["ModelStep", "PresetStep", "DatasetStep", "LayoutStep", "ReviewStep"]
        for name in order[: order.index(step) + 1]:
            await wait_for_screen(pilot, name)
            if name != step:
                await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: ready(pilot.app.screen))
        await pilot.pause(0.2)
    return run_before


def chart_drawn(screen) -> bool:
    """The monitor has drawn its run's end, the chart too (it redraws on its own tick)."""
    return monitor_drew_the_end(screen) and screen.chart_version == screen.drawn_version


class TestHome:
    @pytest.mark.parametrize("size", [SMALL, LARGE])
    def test_runs_table(self, pinned, snap_compare, size):
        async def run_before(pilot):
            await wait_for(pilot, lambda: runs_listed(pilot.app.screen, "assistant-20251122-080000"))

        assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


class TestWizard:
    @pytest.mark.parametrize("size", [SMALL, LARGE])
    def test_model(self, pinned, snap_compare, size):
        assert snap_compare(make_app(open_wizard=True), terminal_size=size,
                            run_before=wizard_at("ModelStep", lambda s: s.query_one("#model-list").option_count == 3))

    @pytest.mark.parametrize("size", [SMALL, LARGE])
    def test_preset(self, pinned, snap_compare, size):
        assert snap_compare(make_app(open_wizard=True), terminal_size=size,
                            run_before=wizard_at("PresetStep", lambda s: "LORA" in holds(s, "#preset-method")))

    def test_dataset(self, pinned, snap_compare):
        assert snap_compare(make_app(open_wizard=True), terminal_size=SMALL,
                            run_before=wizard_at("DatasetStep", lambda s: "as the model sees it" in holds(s, "#data-status")))

    def test_layout(self, pinned, snap_compare):
        assert snap_compare(make_app(open_wizard=True), terminal_size=SMALL,
                            run_before=wizard_at("LayoutStep", lambda s: s.gpus is not None))

    @pytest.mark.parametrize("size", [SMALL, LARGE])
    def test_review(self, pinned, snap_compare, size):
        assert snap_compare(make_app(open_wizard=True), terminal_size=size,
                            run_before=wizard_at("ReviewStep", lambda s: "GiB per GPU" in holds(s, "#review-memory")))


class TestMonitor:
    @pytest.mark.parametrize("size", [SMALL, LARGE])
    def test_completed_run(self, pinned, snap_compare, size):
        async def run_before(pilot):
            await wait_for(pilot, lambda: chart_drawn(pilot.app.screen))

        assert snap_compare(make_app(attach=pinned["done"]), terminal_size=size, run_before=run_before)

    def test_failed_run(self, pinned, snap_compare):
        async def run_before(pilot):
            await wait_for(pilot, lambda: chart_drawn(pilot.app.screen))

        assert snap_compare(make_app(attach=pinned["failed"]), terminal_size=SMALL, run_before=run_before)


class TestConvertMerge:
    def test_done(self, pinned, snap_compare):
        async def run_before(pilot):
            pilot.app.open_convert(pinned["done"])
            await wait_for(pilot, lambda: convert_finished(pilot.app.screen))

        assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


class ScriptedChat(ChatScreen):
    """The chat screen with a recorded conversation instead of live model servers."""

    def start_servers(self) -> None:
        self.ready = [True] * len(self.targets())
        self.set_status()
        answers = ["I am SmolLM, an AI assistant. How can I help you today?",
                   "I am Alice's assistant. I help Alice with her work."]
        for column, answer in zip(self.columns(), answers[-len(self.columns()):]):
            column.add_bubble("Please introduce yourself", "user")
            column.add_bubble(answer, "assistant")


class TestChat:
    @pytest.mark.parametrize("size", [SMALL, LARGE])
    def test_side_by_side(self, pinned, snap_compare, size):
        run = pinned["done"]
        (run / "merged").mkdir()
        (run / "merged" / "config.json").write_text("{}")

        async def run_before(pilot):
            screen = ScriptedChat(run=run, side_by_side=True)
            pilot.app.push_screen(screen)
            await wait_for(pilot, lambda: pilot.app.screen is screen and len(screen.query(Bubble)) == 4)

        assert snap_compare(make_app(), terminal_size=size, run_before=run_before)
