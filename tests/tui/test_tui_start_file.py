"""The wizard started from a config file (`tunewiz new FILE`, or the file typed on the Model
step): an XTuner config as `xtuner copy-cfg` writes internlm2_chat_1_8b_qlora_alpaca_e3, or a
tunewiz YAML. Every step shows the file's values, and Review lists what XTuner settings were
not carried over, by line, before anything is launched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewiz.engine.contract.config import Config, config_from_dict, dump_yaml, load_config
from tunewiz.engine.contract.xtuner_config import import_xtuner
from tunewiz.tui.app import TunewizApp
from tunewiz.tui.screens.wizard.state import FROM_FILE, read_start_file
from tunewiz.tui.screens.wizard.dataset_step import DataChecked
from tunewiz.tui.services.engine_cli import EngineCli

from support import FAKE_ENGINE
from support.tui import MessageLog, holds, painted, until_shown, wait_for, wait_for_screen
from support.xtuner_configs import QLORA_ALPACA, line_of

HUB_MODEL = "'internlm/internlm2-chat-1_8b'"
# What XTuner's file says and tunewiz cannot do the same way: (line starts with, as listed).
UNMAPPED = [("use_varlen_attn = False", "use_varlen_attn = False not mapped ("),
            ("dataloader_num_workers", "dataloader_num_workers = 0 not mapped ("),
            ("betas = ", "betas = (0.9, 0.95) not mapped ("),
            ("        torch_dtype=", "model.llm.torch_dtype = torch.float16 not mapped (")]
WIDE = (200, 50)  # the unmapped lines are long; at 80x24 they wrap and the pane scrolls


@pytest.fixture
def xtuner_config(workdir, tiny_model) -> Path:
    """The copy-cfg recipe, edited as users do: the model is a folder on this machine."""
    assert HUB_MODEL in QLORA_ALPACA
    src = workdir / "internlm2_chat_1_8b_qlora_alpaca_e3_copy.py"
    src.write_text(QLORA_ALPACA.replace(HUB_MODEL, repr(str(tiny_model))), encoding="utf-8")
    return src


def make_app(workdir: Path, start=None) -> TunewizApp:
    engine = EngineCli(prefix=FAKE_ENGINE, output_dir=str(workdir / "work_dirs"))
    return TunewizApp(engine.output_dir, engine=engine, open_wizard=True,
                      wizard_defaults={"start": start} if start else None)


def value(app, selector: str):
    return app.screen.query_one(selector).value


async def goto(pilot, name: str) -> None:
    await wait_for_screen(pilot, name)


async def until_holds(pilot, selector: str, text: str) -> str:
    """Wait until the widget holds text (its handler has run), then the screen as shown."""
    await wait_for(pilot, lambda: text in holds(pilot.app.screen, selector))
    return await painted(pilot)


async def next_step(pilot, name: str) -> None:
    await pilot.press("ctrl+n")
    await goto(pilot, name)


async def test_every_step_shows_the_xtuner_config_and_review_lists_what_was_left(workdir, xtuner_config,
                                                                                  tiny_model):
    app, log = make_app(workdir, read_start_file(xtuner_config)), MessageLog(DataChecked)
    async with app.run_test(size=WIDE, message_hook=log) as pilot:
        await goto(pilot, "ModelStep")
        assert value(app, "#model-path") == str(tiny_model)
        assert value(app, "#model-remote") is True          # trust_remote_code=True in the file
        assert "Remote code is ON" in await until_holds(pilot, "#model-warning", "Remote code is ON")

        await next_step(pilot, "PresetStep")
        options = app.screen.query_one("#preset-list")
        assert options.get_option_at_index(options.highlighted).id == FROM_FILE
        text = await until_holds(pilot, "#preset-method", f"QLORA · sft  (from {xtuner_config.name})")
        assert f"QLORA · sft  (from {xtuner_config.name})" in text
        assert f"XTuner config {xtuner_config.name}: qlora sft" in text and "4 settings not mapped" in text
        shown = {"#set-name": "internlm2_chat_1_8b_qlora_alpaca_e3_copy", "#set-train-epochs": "3",
                 "#set-train-max_steps": "", "#set-train-lr": "0.0001", "#set-train-batch_size": "2",
                 "#set-train-grad_accum": "8", "#set-data-max_length": "1024", "#set-data-pack": True,
                 "#set-lora-r": "32", "#set-lora-alpha": "64", "#set-eval-every": "250",
                 "#set-eval-inputs": "请给我介绍五个上海的景点 | Please tell me five scenic spots in Shanghai",
                 "#set-data-system": "You are a careful assistant."}
        assert {sel: value(app, sel) for sel in shown} == shown

        await next_step(pilot, "DatasetStep")
        assert (value(app, "#data-path"), value(app, "#data-format")) == ("tatsu-lab/alpaca", "alpaca")
        await log.wait(pilot, DataChecked, lambda m: m.files == ["tatsu-lab/alpaca"])
        assert "hub dataset tatsu-lab/alpaca" in await until_shown(pilot, "hub dataset tatsu-lab/alpaca")

        await next_step(pilot, "LayoutStep")  # XTuner's file has no layout: one node, no DeepSpeed
        assert (value(app, "#layout-deepspeed"), value(app, "#layout-nnodes")) == ("none", "1")

        await next_step(pilot, "ReviewStep")
        text = await until_holds(pilot, "#review-unmapped", f"not carried over from {xtuner_config}:")
        assert f"not carried over from {xtuner_config}:" in text
        for start, said in UNMAPPED:
            assert f"  line {line_of(QLORA_ALPACA, start)}: {said}" in text, said
        await pilot.press("ctrl+s")  # save only: a QLoRA run cannot start on this CPU machine
        assert "saved" in await until_holds(pilot, ".step-message", "saved")
        saved = Path(value(app, "#review-path"))

    # What the wizard writes is the import itself, in the wizard's output folder.
    expected = config_from_dict(import_xtuner(xtuner_config).config)
    expected.output_dir = str(workdir / "work_dirs")
    assert load_config(saved) == expected
    written = saved.read_text(encoding="utf-8")
    for start, said in UNMAPPED:
        assert f"#   {xtuner_config}:{line_of(QLORA_ALPACA, start)}: {said}" in written


async def test_a_tunewiz_yaml_fills_every_step_including_the_layout(workdir, tiny_model):
    cfg = Config(name="from-yaml", method="lora", stage="sft")
    cfg.model.path = str(tiny_model)
    cfg.data.files, cfg.data.format = ["data/assistant_openai.jsonl"], "openai"
    cfg.train.lr = 5e-5
    cfg.layout.deepspeed, cfg.layout.nnodes, cfg.layout.master_addr = "zero2", 2, "10.0.0.7"
    text = dump_yaml(cfg)
    src = workdir / "mine.yaml"
    src.write_text("\n".join(line for line in text.splitlines() if not line.startswith("output_dir:")) + "\n")
    app = make_app(workdir, read_start_file(src))
    async with app.run_test(size=WIDE) as pilot:
        await goto(pilot, "ModelStep")
        assert value(app, "#model-path") == str(tiny_model)
        await next_step(pilot, "PresetStep")
        assert "LORA · sft  (from mine.yaml)" in await until_holds(pilot, "#preset-method", "(from mine.yaml)")
        assert (value(app, "#set-name"), value(app, "#set-train-lr")) == ("from-yaml", "5e-05")
        await next_step(pilot, "DatasetStep")
        assert (value(app, "#data-path"), value(app, "#data-format")) == ("data/assistant_openai.jsonl", "openai")
        await next_step(pilot, "LayoutStep")
        assert (value(app, "#layout-deepspeed"), value(app, "#layout-nnodes"), value(app, "#layout-addr")) == (
            "zero2", "2", "10.0.0.7")
        await next_step(pilot, "ReviewStep")
        assert not app.screen.query("#review-unmapped")  # a tunewiz file loses nothing
        await pilot.press("ctrl+s")
        assert "saved" in await until_holds(pilot, ".step-message", "saved")
        saved = Path(value(app, "#review-path"))
    expected = load_config(src)
    expected.output_dir = str(workdir / "work_dirs")  # the file names none: the wizard's folder
    assert load_config(saved) == expected


async def test_a_config_typed_on_the_model_step_fills_the_wizard(workdir, xtuner_config, tiny_model):
    broken = workdir / "broken.py"
    broken.write_text(QLORA_ALPACA.replace("max_length = 1024", "max_length = = 1024"), encoding="utf-8")
    app = make_app(workdir)
    async with app.run_test(size=WIDE) as pilot:
        await goto(pilot, "ModelStep")
        assert value(app, "#model-path") == "demo"
        field = app.screen.query_one("#model-path")
        field.value = str(broken)
        said = "a config file: Enter fills every step from it"
        assert said in await until_holds(pilot, "#model-facts", said)
        await pilot.press("enter")
        said = f"{broken}:{line_of(QLORA_ALPACA, 'max_length = 1024')}: not valid Python"
        assert said in await until_holds(pilot, ".step-message", said)
        assert type(app.screen).__name__ == "ModelStep" and value(app, "#model-path") == str(broken)

        field.value = str(xtuner_config)
        await pilot.press("enter")
        said = f"filled from XTuner config {xtuner_config.name}"
        assert said in await until_holds(pilot, ".step-message", said)
        # Still on the Model step, now showing the model the file names, to check it first.
        assert type(app.screen).__name__ == "ModelStep"
        assert value(app, "#model-path") == str(tiny_model) and value(app, "#model-remote") is True
        await next_step(pilot, "PresetStep")
        said = f"QLORA · sft  (from {xtuner_config.name})"
        assert said in await until_holds(pilot, "#preset-method", said)
        assert value(app, "#set-train-grad_accum") == "8"
        # Another preset and back: the file's recipe returns whole, the model chosen stays.
        options = app.screen.query_one("#preset-list")
        options.focus()
        await pilot.press("down")
        await wait_for(pilot, lambda: app.screen.state.preset not in ("", FROM_FILE))
        chosen = f"(preset {app.screen.state.preset})"
        assert chosen in await until_shown(pilot, chosen)
        await pilot.press("up")
        assert said in await until_holds(pilot, "#preset-method", said)
        assert (value(app, "#set-train-grad_accum"), value(app, "#set-lora-r")) == ("8", "32")
        await next_step(pilot, "DatasetStep")
        assert value(app, "#data-path") == "tatsu-lab/alpaca"
