"""The wizard end to end: the config it writes is exactly what the choices mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewiz.engine.contract.config import load_config
from tunewiz.tui.app import TunewizApp
from tunewiz.tui.screens.wizard.state import preset_files
from tunewiz.tui.services.engine_cli import EngineCli

from support.tui import (MessageLog, holds, machine_with, monitor_drew_the_end, painted, pick_preset, until_shown,
                         wait_for, wait_for_screen)
from tunewiz.tui.screens.wizard.dataset_step import AssistantSetWritten, DataChecked, PreviewReady
from tunewiz.tui.screens.wizard.layout_step import CommandsPlanned, SlurmWritten
from tunewiz.tui.screens.wizard.review_step import MemoryEstimated
from support import FAKE_ENGINE

PRESETS = {p.stem: p for p in preset_files()}


def make_app(workdir: Path) -> TunewizApp:
    engine = EngineCli(prefix=FAKE_ENGINE, output_dir=str(workdir / "work_dirs"))
    return TunewizApp(engine.output_dir, engine=engine, open_wizard=True)


def says(app) -> str:
    """What the step's message line holds (what its handlers said last)."""
    return holds(app.screen, ".step-message")


def step_name(app) -> str:
    return type(app.screen).__name__


async def goto(pilot, name: str) -> None:
    await wait_for_screen(pilot, name)


def assert_commented_like_the_preset(text: str, preset: Path) -> None:
    """The written config opens with the command that runs it, carries every comment of the
    preset it came from, and has a comment on every key."""
    lines = text.splitlines()
    assert lines[0].startswith("# tunewiz train ") and lines[0].endswith(".yaml --detach")
    for line in preset.read_text().splitlines():
        if "#" in line and not line.startswith("# tunewiz "):
            comment = line.split("#", 1)[1].strip() if not line.startswith("#") else line.lstrip("# ")
            assert comment in text, comment
    keys = [line for line in lines if line.strip() and not line.startswith("#")]
    assert keys and all(" # " in line for line in keys), [line for line in keys if " # " not in line]


async def test_enter_through_the_wizard_trains_with_the_defaults(workdir, monkeypatch):
    monkeypatch.setattr("tunewiz.tui.screens.wizard.review_step.detect_gpus", lambda: [])  # CPU-only
    app, log = make_app(workdir), MessageLog(MemoryEstimated)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        for step in ("ModelStep", "PresetStep", "DatasetStep", "LayoutStep", "ReviewStep"):
            await goto(pilot, step)
            if step == "ReviewStep":  # the estimate speaks of RAM where there is no GPU
                await log.wait(pilot, MemoryEstimated)
                text = await painted(pilot)
                assert "GiB of RAM" in text and "per GPU" not in text
                assert "train.auto_batch: no regrouping (not on a CPU)" in review_memory(app)
            await pilot.press("enter")
        await goto(pilot, "MonitorScreen")
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen), timeout=20)
        assert "Training completed" in await painted(pilot)
    text = (workdir / "work_dirs" / "configs" / "assistant.yaml").read_text()
    assert_commented_like_the_preset(text, PRESETS["demo-assistant"])
    written = load_config(workdir / "work_dirs" / "configs" / "assistant.yaml")
    expected = load_config(PRESETS["demo-assistant"])
    expected.output_dir = str(workdir / "work_dirs")
    assert written == expected
    runs = [p for p in (workdir / "work_dirs").iterdir() if p.name.startswith("assistant-")]
    assert load_config(runs[0] / "config.yaml") == expected


async def test_choices_land_in_the_config_and_back_keeps_them(workdir):
    app, log = make_app(workdir), MessageLog(DataChecked, MemoryEstimated)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        await goto(pilot, "ModelStep")
        await pilot.press("enter")
        await goto(pilot, "PresetStep")
        # Pick the sft-lora preset with the keyboard, then edit some settings.
        await pick_preset(pilot, "sft-lora")
        edits = {"#set-name": "alice-bot", "#set-train-max_steps": "7", "#set-train-lr": "3e-4",
                 "#set-eval-inputs": "Who are you? | 你是谁？", "#set-data-system": "Be brief."}
        for selector, value in edits.items():
            app.screen.query_one(selector).value = value
        await pilot.press("ctrl+n")
        await goto(pilot, "DatasetStep")
        app.screen.query_one("#data-path").value = "data/assistant_openai.jsonl"
        await log.wait(pilot, DataChecked, lambda m: m.files == ["data/assistant_openai.jsonl"])
        assert "format openai" in await until_shown(pilot, "format openai")
        await pilot.press("escape")  # back: the edits are still there
        await goto(pilot, "PresetStep")
        assert app.screen.query_one("#set-train-lr").value == "0.0003"
        assert app.screen.query_one("#set-train-max_steps").value == "7"
        await pilot.press("ctrl+n")
        await goto(pilot, "DatasetStep")
        assert app.screen.query_one("#data-path").value == "data/assistant_openai.jsonl"
        await pilot.press("ctrl+n")
        await goto(pilot, "LayoutStep")
        await pilot.press("ctrl+n")
        await goto(pilot, "ReviewStep")
        await log.wait(pilot, MemoryEstimated)
        text = await painted(pilot)
        assert "GiB" in text and "memory" in text and "tokenized cache" in text
        await pilot.press("ctrl+s")  # save only
        await wait_for(pilot, lambda: "saved" in says(app))
        assert "saved" in await painted(pilot)
        assert step_name(app) == "ReviewStep"
    text = (workdir / "work_dirs" / "configs" / "alice-bot.yaml").read_text()
    assert_commented_like_the_preset(text, PRESETS["sft-lora"])
    # An edited value sits on its own line, the preset's comment beside it.
    lr_comment = next(line.split("#", 1)[1] for line in PRESETS["sft-lora"].read_text().splitlines()
                      if line.strip().startswith("lr:"))
    assert any(line.split("#")[0].split() == ["lr:", "0.0003"] and line.endswith(lr_comment)
               for line in text.splitlines())
    written = load_config(workdir / "work_dirs" / "configs" / "alice-bot.yaml")
    expected = load_config(PRESETS["sft-lora"])
    expected.name = "alice-bot"
    expected.output_dir = str(workdir / "work_dirs")
    expected.train.max_steps = 7
    expected.train.lr = 3e-4
    expected.eval.inputs = ["Who are you?", "你是谁？"]
    expected.data.system = "Be brief."
    expected.data.files = ["data/assistant_openai.jsonl"]
    assert written == expected


async def review_the_defaults(pilot, log: MessageLog) -> None:
    """Next through every step with what it offers, to the Review's memory estimate."""
    for step in ("ModelStep", "PresetStep", "DatasetStep", "LayoutStep"):
        await goto(pilot, step)
        await pilot.press("ctrl+n")
    await goto(pilot, "ReviewStep")
    await log.wait(pilot, MemoryEstimated)


def review_memory(app) -> str:
    """The Review step's memory lines as plain text (the Static's content, not its wrapping)."""
    return str(app.screen.query_one("#review-memory").content)


async def test_review_shows_what_auto_batch_picks_for_the_gpu(workdir, monkeypatch):
    from tunewiz.tui.services.gpus import Gpu

    machine_with(monkeypatch, [Gpu(0, "Big GPU", 80 * 1024, 0)])
    app, log = make_app(workdir), MessageLog(MemoryEstimated)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        await goto(pilot, "ModelStep")
        await pilot.press("ctrl+n")
        await goto(pilot, "PresetStep")
        # sft-lora as written: 1 x 16 with checkpointing at 2,048 tokens.
        await pick_preset(pilot, "sft-lora")
        await wait_for(pilot, lambda: app.screen.query_one("#set-train-grad_accum").value == "16")
        for step in ("PresetStep", "DatasetStep", "LayoutStep"):
            await goto(pilot, step)
            await pilot.press("ctrl+n")
        await goto(pilot, "ReviewStep")
        await log.wait(pilot, MemoryEstimated)
        text = review_memory(app)
        # What the run would pick (the same choice as `tunewiz train CONFIG --dry-run --gpu-memory 80`).
        assert ("train.auto_batch: regroups to micro-batch 4 x grad_accum 4, checkpointing off "
                "(config: micro-batch 1 x grad_accum 16, checkpointing on): peak ≈ ") in text, text
        assert "GiB free" in text and "fits GPU 0" in text


async def test_review_says_which_setting_to_change_when_the_gpu_is_too_small(workdir, monkeypatch):
    from tunewiz.tui.services.gpus import Gpu

    # 2 GiB: the demo preset needs about 2.5 with the CUDA context, and 1.5 of the 1.4 free
    # with checkpointing on (so auto_batch finds nothing that fits either).
    machine_with(monkeypatch, [Gpu(0, "Small GPU", 2048, 0)])
    app, log = make_app(workdir), MessageLog(MemoryEstimated)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        await review_the_defaults(pilot, log)
        text = " ".join((await painted(pilot)).split())
        assert "won't fit" in text and "GiB per GPU and GPU 0 has 2.0 GiB" in text
        assert "change: set train.gradient_checkpointing: true or lower train.batch_size to " in text
        batch = text.split("lower train.batch_size to ")[1].split()[0]
        assert int(batch) < 4 and "tokenized cache" in text
        # Back to the preset's settings, take the advice, and the same review fits.
        for back_to in ("LayoutStep", "DatasetStep", "PresetStep"):
            await pilot.press("escape")
            await goto(pilot, back_to)
        estimates = log.mark()
        app.screen.query_one("#set-train-batch_size").value = batch
        for step in ("PresetStep", "DatasetStep", "LayoutStep"):
            await goto(pilot, step)
            await pilot.press("ctrl+n")
        await goto(pilot, "ReviewStep")
        await log.wait(pilot, MemoryEstimated, since=estimates)
        text = " ".join((await painted(pilot)).split())
        assert "fits GPU 0" in text and "won't fit" not in text and "GiB per GPU" in text


async def test_review_fits_a_run_that_auto_batch_regroups_to_fit(workdir, monkeypatch):
    """The run makes the same choice when it starts, so the Review counts what will train,
    as `tunewiz train CONFIG --dry-run` does."""
    from tunewiz.tui.services.gpus import Gpu

    # 2.4 GiB: the demo preset as written (4 rows, no checkpointing) needs about 2.5 with the
    # CUDA context; with checkpointing on, which auto_batch picks, about 1.5 of the 1.8 free.
    machine_with(monkeypatch, [Gpu(0, "Mid GPU", int(2.4 * 1024), 0)])
    app, log = make_app(workdir), MessageLog(MemoryEstimated)
    async with app.run_test(size=(100, 30), message_hook=log) as pilot:
        await review_the_defaults(pilot, log)
        text = " ".join(review_memory(app).split())
        assert "won't fit" not in text, text
        assert "fits GPU 0 (2 GiB) as train.auto_batch regroups it" in text, text
        assert "regroups to micro-batch 4 x grad_accum 1, checkpointing on" in text, text


async def test_bad_input_keeps_the_user_on_the_step(workdir):
    app, log = make_app(workdir), MessageLog(DataChecked)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        await goto(pilot, "ModelStep")
        app.screen.query_one("#model-path").value = str(workdir / "no-such-model")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: "no config.json" in says(app))
        assert "no config.json" in await painted(pilot)
        assert step_name(app) == "ModelStep"
        app.screen.query_one("#model-path").value = "demo"
        await pilot.press("ctrl+n")
        await goto(pilot, "PresetStep")
        app.screen.query_one("#set-train-batch_size").value = "lots"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: "not an integer" in says(app))
        assert "not an integer" in await painted(pilot)
        app.screen.query_one("#set-train-batch_size").value = "2"
        app.screen.query_one("#set-name").value = "my run"        # the config's own name rule
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: "not a valid run name" in says(app))
        assert "not a valid run name" in await painted(pilot)
        assert step_name(app) == "PresetStep"
        app.screen.query_one("#set-name").value = "my-run.v2"
        await pilot.press("ctrl+n")
        await goto(pilot, "DatasetStep")
        bad = workdir / "data" / "bad.jsonl"
        bad.write_text('{"conversation": [{"input": "hi", "output": "hello"}]}\n{"conversation": 3}\n')
        app.screen.query_one("#data-path").value = "data/bad.jsonl"
        assert (await log.wait(pilot, DataChecked, lambda m: m.files == ["data/bad.jsonl"])).problems
        assert "bad.jsonl:2" in await painted(pilot)
        await pilot.press("ctrl+n")
        # The refusal is said by the handler that would otherwise have gone on.
        await wait_for(pilot, lambda: "bad.jsonl:2" in says(app))
        assert step_name(app) == "DatasetStep"


async def test_assistant_set_helper_writes_a_dataset_for_the_name(workdir):
    app, log = make_app(workdir), MessageLog(AssistantSetWritten)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        await goto(pilot, "ModelStep")
        await pilot.press("enter")
        await goto(pilot, "PresetStep")
        await pilot.press("enter")
        await goto(pilot, "DatasetStep")
        owner = app.screen.query_one("#data-owner")
        owner.focus()
        await wait_for(pilot, lambda: app.focused is owner)
        await pilot.press(*"Bob", "enter")
        # data/assistant.json already holds Alice's set (the fixture's): it is not replaced.
        assert (await log.wait(pilot, AssistantSetWritten)).path == "data/assistant-Bob.json"
        assert "wrote data/assistant-Bob.json" in await painted(pilot)
        assert app.screen.query_one("#data-path").value == "data/assistant-Bob.json"
    assert "Bob" in (workdir / "data" / "assistant-Bob.json").read_text()
    assert "Alice" in (workdir / "data" / "assistant.json").read_text()


async def test_layout_shows_every_node_command_and_writes_the_slurm_script(workdir):
    app, log = make_app(workdir), MessageLog(CommandsPlanned, SlurmWritten)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        for step in ("ModelStep", "PresetStep", "DatasetStep"):
            await goto(pilot, step)
            await pilot.press("enter")
        await goto(pilot, "LayoutStep")
        await log.wait(pilot, CommandsPlanned)
        assert "one node: nothing to run elsewhere" in await until_shown(pilot, "one node: nothing to run elsewhere")
        app.screen.query_one("#layout-nnodes").value = "2"
        app.screen.query_one("#layout-addr").value = "10.0.0.1"
        await log.wait(pilot, CommandsPlanned, lambda m: "10.0.0.1" in m.text and "# node 1" in m.text)
        text = " ".join((await painted(pilot)).split())   # long paths wrap
        assert "--node-rank 0 # node 0" in text and "--node-rank 1 # node 1" in text
        assert "10.0.0.1:29500" in text
        script = workdir / "work_dirs" / "configs" / "assistant.sbatch"
        app.screen.query_one("#layout-slurm-write").press()
        assert not (await log.wait(pilot, SlurmWritten)).problem
        assert "sbatch" in await painted(pilot)
        assert step_name(app) == "LayoutStep"
    body = script.read_text()
    assert "#SBATCH --nodes=2" in body and "tunewiz train" in body and "assistant.yaml" in body
    saved = load_config(workdir / "work_dirs" / "configs" / "assistant.yaml")
    assert saved.layout.nnodes == 2 and saved.layout.master_addr == "10.0.0.1"


async def test_dataset_preview_highlights_trained_spans_and_shows_lengths(workdir):
    app, log = make_app(workdir), MessageLog(PreviewReady)
    async with app.run_test(size=(80, 24), message_hook=log) as pilot:
        for step in ("ModelStep", "PresetStep"):
            await goto(pilot, step)
            await pilot.press("enter")
        await goto(pilot, "DatasetStep")
        assert (await log.wait(pilot, PreviewReady)).report
        text = await painted(pilot)
        assert "first sample" in text
        # check-data --json (the fake's report): 1200 samples of 30 tokens, 1800 of 40.
        assert "tokens per sample" in text and "1-32" in text and "1200" in text and "1800" in text
        assert "129-256" in text  # the max_length row, here empty
        segments = [seg for strip in app.screen.query_one("#data-preview").lines for seg in strip]
        trained = "".join(s.text for s in segments if s.style and s.style.bold and s.style.color
                          and s.style.color.name == "green")
        assert "I am Alice's assistant.<|im_end|>" in trained
        assert "Please introduce yourself" not in trained


async def test_dataset_step_quick_checks_any_source_from_its_first_records(workdir):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tunewiz.tui.screens.wizard.dataset_step import QUICK_RECORDS, DataChecked

    chat = {"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Yours."}]}
    pq.write_table(pa.Table.from_pylist([chat] * 3), workdir / "data" / "chat.parquet")
    # A bad record past the first QUICK_RECORDS is check-data's to find, not the quick check's.
    big = [chat] * (QUICK_RECORDS * 5) + [{"messages": 3}]
    (workdir / "data" / "big.jsonl").write_text("".join(json.dumps(r) + "\n" for r in big))
    checked: dict[str, DataChecked] = {}

    def hook(message):
        if isinstance(message, DataChecked):
            checked[", ".join(message.files)] = message

    app = make_app(workdir)
    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        for step in ("ModelStep", "PresetStep"):
            await goto(pilot, step)
            await pilot.press("enter")
        await goto(pilot, "DatasetStep")
        for source in ("data/chat.parquet", "data/big.jsonl", "data", "someone/some-set:train", "data/nope.csv"):
            app.screen.query_one("#data-path").value = source
            await wait_for(pilot, lambda: source in checked)
        assert checked["data/chat.parquet"].summary == "3 samples · format openai"
        big_check = checked["data/big.jsonl"]
        assert big_check.problems == [] and big_check.summary == (
            f"format openai · the first {QUICK_RECORDS} records of each source are fine · "
            f"about {len(big):,} records")
        # A folder of files: each file is a source, the demo's JSON among them.
        assert "format conversation, openai, pretrain" in checked["data"].summary
        assert checked["someone/some-set:train"].summary == "hub dataset someone/some-set:train (check-data loads it)"
        assert checked["data/nope.csv"].problems == ["data/nope.csv: no such file"]
        await pilot.press("ctrl+n")  # the step keeps the user on a missing file
        await wait_for(pilot, lambda: "no such file" in says(app))
        assert "no such file" in await painted(pilot)
        assert step_name(app) == "DatasetStep"
        app.screen.query_one("#data-path").value = "data/chat.parquet"
        await pilot.press("ctrl+n")
        await goto(pilot, "LayoutStep")
