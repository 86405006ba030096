"""The wizard's Review counts what train.auto_batch will train: a config that does not fit
as written but fits as the run regroups it is shown as fitting, like `--dry-run` says."""

from __future__ import annotations

from tunewiz.tui.app import TunewizApp
from tunewiz.tui.screens.wizard.review_step import MemoryEstimated
from tunewiz.tui.services.engine_cli import EngineCli

from support import FAKE_ENGINE
from support.tui import MessageLog, holds, wait_for_screen


async def test_review_fits_a_run_that_auto_batch_regroups_to_fit(workdir, monkeypatch):
    from tunewiz.tui.services.gpus import Gpu

    # 2.4 GiB: the demo preset as written (4 rows, no checkpointing) needs about 2.5 with the
    # CUDA context; with checkpointing on, which auto_batch picks, about 1.5 of the 1.8 free.
    mid = [Gpu(0, "Mid GPU", int(2.4 * 1024), 0)]
    for step in ("preset_step", "layout_step", "review_step"):
        monkeypatch.setattr(f"tunewiz.tui.screens.wizard.{step}.detect_gpus", lambda: mid)
    engine = EngineCli(prefix=FAKE_ENGINE, output_dir=str(workdir / "work_dirs"))
    app, log = TunewizApp(engine.output_dir, engine=engine, open_wizard=True), MessageLog(MemoryEstimated)
    async with app.run_test(size=(100, 30), message_hook=log) as pilot:
        for step in ("ModelStep", "PresetStep", "DatasetStep", "LayoutStep"):
            await wait_for_screen(pilot, step)
            await pilot.press("ctrl+n")
        await wait_for_screen(pilot, "ReviewStep")
        await log.wait(pilot, MemoryEstimated)
        text = " ".join(holds(app.screen, "#review-memory").split())
        assert "won't fit" not in text, text
        assert "fits GPU 0 (2 GiB) as train.auto_batch regroups it" in text, text
        assert "regroups to micro-batch 4 x grad_accum 1, checkpointing on" in text, text
