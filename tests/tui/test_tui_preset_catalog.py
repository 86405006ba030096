"""The wizard's Preset step and `tunewiz presets list` read one catalog: the same presets,
in the same order, with the same words about each."""

from __future__ import annotations

from textual.widgets import OptionList

from tunewiz.engine.demo import write_sample_datasets
from tunewiz.tui.app import TunewizApp
from tunewiz.tui.services.engine_cli import EngineCli

from support import FAKE_ENGINE
from support.tui import holds, painted, wait_for


async def test_preset_step_lists_what_presets_list_prints(tmp_path, monkeypatch, cli):
    r = cli("presets", "list")
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    listed = [name for name in listed if name not in {"name", "NAME"}]
    demo_line = next(line for line in r.stdout.splitlines() if line.startswith("demo-assistant"))

    monkeypatch.chdir(tmp_path)
    write_sample_datasets(tmp_path / "data", "Alice")
    engine = EngineCli(prefix=FAKE_ENGINE, output_dir=str(tmp_path / "work_dirs"))
    app = TunewizApp(engine.output_dir, engine=engine, open_wizard=True)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ModelStep")
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PresetStep")
        options = app.screen.query_one("#preset-list", OptionList)
        shown = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert shown == listed
        # Sizes in numeric order, as the CLI lists them: 0.5B before 1.5B before 14B.
        qwen = [s for s in shown if s.startswith("qwen2_5_")]
        assert qwen.index("qwen2_5_1_5b_instruct_lora") < qwen.index("qwen2_5_14b_instruct_qlora")
        # The demo preset's own words, which speak of `tunewiz demo`, are shown too.
        await wait_for(pilot, lambda: "CPU-friendly" in holds(app.screen, "#preset-about"))
        assert "CPU-friendly" in await painted(pilot)
        assert "CPU-friendly personal-assistant run on the demo model" in demo_line
