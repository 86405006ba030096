"""`tunewiz import-xtuner`: XTuner Python configs become tunewiz YAML, through the real CLI.

The two configs (tests/support/xtuner_configs.py) are written the way `xtuner copy-cfg`
lays out its tutorial recipes (a QLoRA chat fine-tune on Alpaca, and full incremental
pretraining on a local JSON file). Nothing in them is executed: they import XTuner, which
is not installed here.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tunewiz.engine.contract.config import load_config

from support.xtuner_configs import FULL_PRETRAIN, QLORA_ALPACA, line_of


def import_config(cli, tmp_path: Path, name: str, text: str, *extra: str):
    src = tmp_path / f"{name}.py"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / f"{name}.yaml"
    result = cli("import-xtuner", str(src), "-o", str(out), *extra, cwd=tmp_path)
    return src, out, result


def test_qlora_alpaca_config_becomes_a_qlora_preset(cli, tmp_path):
    src, out, r = import_config(cli, tmp_path, "internlm2_chat_1_8b_qlora_alpaca_e3", QLORA_ALPACA)
    assert r.returncode == 0, r.stderr
    cfg = load_config(out)
    assert cfg.name == "internlm2_chat_1_8b_qlora_alpaca_e3"
    assert (cfg.method, cfg.stage) == ("qlora", "sft")
    assert cfg.model.path == "internlm/internlm2-chat-1_8b" and cfg.model.trust_remote_code is True
    assert (cfg.quant.bits, cfg.quant.type, cfg.quant.double_quant) == (4, "fp4", False)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target) == (32, 64, 0.05, "all-linear")
    assert cfg.data.files == ["tatsu-lab/alpaca"]
    assert (cfg.data.format, cfg.data.template, cfg.data.max_length, cfg.data.pack) == (
        "alpaca", "internlm2_chat", 1024, True)
    assert cfg.data.system == "You are a careful assistant."
    t = cfg.train
    assert (t.batch_size, t.grad_accum, t.epochs, t.lr, t.weight_decay, t.max_grad_norm, t.warmup_ratio) == (
        2, 8, 3, 1e-4, 0.01, 1.0, 0.05)
    assert (t.save_every, t.save_total_limit) == (300, 0)  # XTuner's -1 (keep all) is tunewiz's 0
    assert cfg.eval.every == 250
    assert cfg.eval.inputs == ["请给我介绍五个上海的景点", "Please tell me five scenic spots in Shanghai"]

    # what tunewiz cannot do the same way is named with its line, in line order
    listed = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{src}:")]
    where = lambda start: f"{src}:{line_of(QLORA_ALPACA, start)}: "  # noqa: E731
    assert listed[0].startswith(where("use_varlen_attn = False") + "use_varlen_attn = False not mapped (")
    assert listed[1].startswith(where("dataloader_num_workers") + "dataloader_num_workers = 0 not mapped (")
    assert listed[2].startswith(where("betas = ") + "betas = (0.9, 0.95) not mapped (tunewiz's AdamW uses")
    assert listed[3].startswith(where("        torch_dtype=") + "model.llm.torch_dtype = torch.float16 not mapped (")
    assert len(listed) == 4, r.stdout
    # the YAML says so too, so the file stands on its own
    text = out.read_text(encoding="utf-8")
    assert text.startswith(f"# tunewiz train {out}\n")
    assert all(f"#   {ln}" in text for ln in listed)


def test_full_custom_pretrain_config_becomes_a_full_pretrain_preset(cli, tmp_path):
    src, out, r = import_config(cli, tmp_path, "internlm2_1_8b_full_custom_pretrain_e1", FULL_PRETRAIN)
    assert r.returncode == 0, r.stderr
    cfg = load_config(out)
    assert (cfg.method, cfg.stage, cfg.data.format) == ("full", "pretrain", "pretrain")
    assert cfg.model.path == "models/internlm2-1_8b"
    assert cfg.model.trust_remote_code is False
    assert cfg.data.files == ["data/pretrain.json", "data/more.json"]
    assert (cfg.data.template, cfg.data.max_length, cfg.data.pack, cfg.data.system) == ("auto", 4096, False, "")
    t = cfg.train
    assert (t.batch_size, t.grad_accum, t.epochs, t.lr, t.weight_decay, t.max_grad_norm, t.warmup_ratio) == (
        1, 32, 1, 2e-5, 0, 1.0, 0.03)
    assert (t.save_every, t.save_total_limit, t.seed, t.attention) == (1000, 3, 42, "varlen")
    assert (cfg.eval.every, cfg.eval.inputs) == (500, ["上海是", "Shanghai is"])
    listed = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{src}:")]
    assert listed == [f"{src}:{line_of(FULL_PRETRAIN, 'dataloader_num_workers')}: dataloader_num_workers = 4 "
                      "not mapped (tunewiz reads its tokenized data cache in the training process)"]
    assert "not a folder here" in r.stdout  # the model must be a local folder to train


def test_an_existing_output_is_never_replaced(cli, tmp_path):
    out = tmp_path / "mine.yaml"
    out.write_text("name: mine\n", encoding="utf-8")
    src = tmp_path / "cfg.py"
    src.write_text(FULL_PRETRAIN, encoding="utf-8")
    r = cli("import-xtuner", str(src), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 1
    assert out.read_text(encoding="utf-8") == "name: mine\n"
    assert str(out) in r.stderr and "Traceback" not in r.stderr


def test_default_output_sits_beside_the_config(cli, tmp_path):
    src = tmp_path / "my_cfg.py"
    src.write_text(QLORA_ALPACA, encoding="utf-8")
    r = cli("import-xtuner", str(src), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_config(tmp_path / "my_cfg.yaml").method == "qlora"


def one_error_line(r) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_syntax_error_is_one_line_with_file_and_line(cli, tmp_path):
    broken = QLORA_ALPACA.replace("max_length = 1024", "max_length = = 1024")
    src, out, r = import_config(cli, tmp_path, "broken", broken)
    line = one_error_line(r)
    assert re.search(rf"{re.escape(str(src))}:{line_of(broken, 'max_length = =')}: not valid Python", line)
    assert not out.exists()


def test_a_python_file_that_is_no_xtuner_config_is_refused(cli, tmp_path):
    src, out, r = import_config(cli, tmp_path, "script", "import os\nprint(os.getcwd())\n")
    assert f"{src}:1: not an XTuner config" in one_error_line(r)
    assert not out.exists()


def test_a_value_tunewiz_refuses_is_named_at_its_line(cli, tmp_path):
    bad = QLORA_ALPACA.replace("lr = 1e-4", "lr = 0")
    src, out, r = import_config(cli, tmp_path, "bad", bad)
    line = one_error_line(r)
    assert f"{src}:{line_of(bad, 'lr = 0')}: lr = 0 cannot be used: train.lr: must be above 0" in line


def test_nothing_in_the_config_runs(cli, tmp_path):
    marker = tmp_path / "ran"
    text = (f"open({str(marker)!r}, 'w').write('x')\n"
            + QLORA_ALPACA.replace("lr = 1e-4", "lr = __import__('os').getpid()"))
    src, out, r = import_config(cli, tmp_path, "sneaky", text)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    # a value only running the file would give is listed, and tunewiz's default is kept
    at = line_of(text, "lr = __import__")
    assert f"{src}:{at}: lr = __import__('os').getpid() not mapped (not a value that can be read" in r.stdout
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["train"]["lr"] == 2e-4
