"""A node rank outside 0..nnodes-1 is refused with the same words wherever it is given:
in the config, on the command line (--node-rank, NODE_RANK) and in the wizard's Layout step."""

from __future__ import annotations

from tunewiz.engine.demo import write_sample_datasets
from tunewiz.tui.app import TunewizApp
from tunewiz.tui.services.engine_cli import EngineCli

from support import FAKE_ENGINE
from support.runs import one_line_error
from support.tui import MessageLog, holds, painted, wait_for, wait_for_screen
from tunewiz.tui.screens.wizard.layout_step import CommandsPlanned


def test_config_and_command_line(tmp_path, cli):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: job\nlayout:\n  nnodes: 2\n  node_rank: 2\n")
    r = cli("train", str(cfg), "--print-node-commands")
    assert r.returncode == 1
    assert "layout.node_rank: 2 is outside 0..1" in one_line_error(r)
    cfg.write_text("name: job\nlayout:\n  nnodes: 2\n")
    for extra, env in ((["--node-rank", "2"], None), ([], {"NODE_RANK": "5"})):
        r = cli("train", str(cfg), "--print-node-commands", *extra, env=env)
        assert r.returncode == 1
        rank = extra[1] if extra else "5"
        assert f"node rank: {rank} is outside 0..1 (give --node-rank between 0 and layout.nnodes - 1)" in one_line_error(r)


async def test_layout_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_sample_datasets(tmp_path / "data", "Alice")
    engine = EngineCli(prefix=FAKE_ENGINE, output_dir=str(tmp_path / "work_dirs"))
    app, log = TunewizApp(engine.output_dir, engine=engine, open_wizard=True), MessageLog(CommandsPlanned)
    async with app.run_test(size=(120, 40), message_hook=log) as pilot:
        for step in ("ModelStep", "PresetStep", "DatasetStep"):
            await wait_for_screen(pilot, step)
            await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "LayoutStep")
        await log.wait(pilot, CommandsPlanned)
        assert "one node" in await painted(pilot)
        app.screen.query_one("#layout-nnodes").value = "2"
        app.screen.query_one("#layout-rank").value = "2"
        app.screen.query_one("#layout-nnodes").focus()
        await pilot.press("enter")
        said = "this node rank: 2 is outside 0..1"
        await wait_for(pilot, lambda: said in holds(app.screen, ".step-message"))
        assert said in await painted(pilot)
        assert type(app.screen).__name__ == "LayoutStep"   # the step keeps the user there
