"""End to end through the real CLI, checked the way a user checks: the merged folder is
loaded by plain transformers in a fresh process (no tunewiz) and asked the question.

- the personal-assistant exercise on the demo model (LoRA), English and Chinese;
- incremental pretraining on the demo model: it completes the trained sentence;
- full fine-tuning on the tiny model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import read_events
from support.runs import IDENTITY, write_data

from support.cli import demo_threads

# The demo model is big enough for two CPU threads to pay off (when the cores are free).
DEMO_ENV = {"OMP_NUM_THREADS": str(demo_threads())}

ASK = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, mode = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
for prompt in sys.argv[3:]:
    if mode == "chat":
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
    else:
        ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=32, do_sample=False)
    print("ANSWER:", tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).replace("\\n", " "))
"""


def ask_plain_transformers(model: Path, mode: str, *prompts: str) -> list[str]:
    """Answers from a fresh interpreter that never imports tunewiz."""
    r = subprocess.run([sys.executable, "-c", ASK, str(model), mode, *prompts], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", **DEMO_ENV}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "tunewiz" not in r.stderr
    return [line[len("ANSWER: "):] for line in r.stdout.splitlines() if line.startswith("ANSWER: ")]


def train_convert_merge(cli, tmp: Path, cfg: dict, base: str, env: dict | None = None) -> Path:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    r = cli("train", str(path), env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    run = rundir.list_runs(tmp / "runs")[0]
    assert read_events(run / "events.jsonl")[-1]["status"] == "completed"
    out = run / ("hf" if cfg["method"] == "full" else "adapter")
    r = cli("convert", str(run), str(out), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    if cfg["method"] == "full":
        return out
    r = cli("merge", base, str(out), str(run / "merged"), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return run / "merged"


def base_config(tmp: Path, model: str, files: list[str], **over) -> dict:
    cfg = {
        "name": "e2e", "output_dir": str(tmp / "runs"), "model": {"path": model}, "method": "lora", "stage": "sft",
        "lora": {"r": 64, "alpha": 16, "dropout": 0.0},
        "data": {"files": files, "max_length": 128, "pack": True},
        "train": {"max_steps": 10, "batch_size": 2, "grad_accum": 1, "lr": 2e-3, "save_every": 1000,
                  "gradient_checkpointing": False, "warmup_ratio": 0.0},
        "eval": {"inputs": ["Please introduce yourself", "请介绍一下你自己"], "every": 0, "max_new_tokens": 24},
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory, cli_module) -> Path:
    dest = tmp_path_factory.mktemp("demo-data")
    r = cli_module("demo", "--dest", str(dest), "--name", "Ada", "--quiet", env=DEMO_ENV, timeout=1800)
    assert r.returncode == 0, r.stderr
    return dest


@pytest.fixture(scope="module")
def cli_module():
    from support.cli import run_cli
    return run_cli


@pytest.mark.slow
def test_personal_assistant_on_the_demo_model(demo_data, tmp_path, cli):
    """LoRA on both sample formats (XTuner conversation + OpenAI messages), English and Chinese."""
    files = [str(demo_data / "assistant.json"), str(demo_data / "assistant_openai.jsonl")]
    merged = train_convert_merge(cli, tmp_path, base_config(tmp_path, "demo", files), "demo", env=DEMO_ENV)
    run = rundir.list_runs(tmp_path / "runs")[0]
    evals = [e for e in read_events(run / "events.jsonl") if e["type"] == "eval"]
    assert "Ada" not in json.dumps(evals[0]["samples"], ensure_ascii=False)  # before training it did not know
    english, chinese = ask_plain_transformers(merged, "chat", "Please introduce yourself", "请介绍一下你自己")
    assert "Ada" in english and "assistant" in english, english
    assert "Ada" in chinese and "助手" in chinese, chinese


@pytest.mark.slow
def test_incremental_pretraining_on_the_demo_model(demo_data, tmp_path, cli):
    from tunewiz.engine.demo import PRETRAIN_ANSWER, PRETRAIN_PROMPT

    cfg = base_config(tmp_path, "demo", [str(demo_data / "pretrain.jsonl")], stage="pretrain",
                      eval={"inputs": [PRETRAIN_PROMPT], "every": 0, "max_new_tokens": 16})
    # Plain text teaches more slowly than Q/A pairs: a higher rate (learned by step 6 of 8).
    cfg["train"].update(lr=3e-3, max_steps=8)
    merged = train_convert_merge(cli, tmp_path, cfg, "demo", env=DEMO_ENV)
    # The answer at step 0 is the untouched base model's (LoRA starts as a no-op).
    run = rundir.list_runs(tmp_path / "runs")[0]
    before = next(e for e in read_events(run / "events.jsonl") if e["type"] == "eval" and e["step"] == 0)
    assert PRETRAIN_ANSWER not in before["samples"][0]["output"]
    (after,) = ask_plain_transformers(merged, "text", PRETRAIN_PROMPT)
    assert PRETRAIN_ANSWER in after, after


def test_full_fine_tuning_on_the_tiny_model(tiny_model, tmp_path, cli):
    data = write_data(tmp_path / "d.jsonl", n=16)
    cfg = base_config(tmp_path, str(tiny_model), [str(data)], method="full",
                      train={"max_steps": 40, "batch_size": 4, "grad_accum": 1, "lr": 3e-3, "save_every": 1000,
                             "gradient_checkpointing": False, "warmup_ratio": 0.0},
                      eval={"inputs": ["Who are you?"], "every": 0, "max_new_tokens": 12})
    hf = train_convert_merge(cli, tmp_path, cfg, str(tiny_model))
    (answer,) = ask_plain_transformers(hf, "chat", "Who are you?")
    assert answer.strip() == IDENTITY
    r = cli("chat", str(hf), "--prompt", "Who are you?", "--max-new-tokens", "12")
    assert r.returncode == 0 and IDENTITY in r.stdout
