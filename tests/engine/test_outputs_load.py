"""adapter/, hf/ and merged/ load in other tools: the tokenizer in a spelling transformers 4.x
and 5.x both read, adapter_config.json naming the base by its hub id, the adapter folder
loadable alone with peft, and a README.md model card saying what was trained.

The LoRA case is a real run: the tiny model sits in a Hugging Face cache under a hub id
(its tokenizer saved by transformers 5, so with TokenizersBackend and a list of extra
special tokens), `tunewiz train` trains it offline and `tunewiz export` writes the folders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.adapter_fixtures import PLAIN_LOAD, PROBE, add_full_checkpoint, add_lora_checkpoint, make_run
from support.cli import run_cli
from support.runs import losses, only_run, write_config, write_data

from tunewiz.engine.contract.config import Config, DataConfig, LoraConfig, ModelConfig, TrainConfig
from tunewiz.engine.contract.model_card import Result, base_model_name, render
from tunewiz.engine.saved_tokenizer import portable_config

HUB_ID = "tiny-org/tiny-chat"
EXTRA = ["<|im_start|>", "<|endoftext|>"]
SPECIAL_PROBE = f"<|im_start|>user\n{PROBE}<|im_end|><|endoftext|>"


def cache_under_hub_id(hub: Path, tiny_model: Path) -> Path:
    """The tiny model in a Hugging Face cache as `hf download` leaves it; its tokenizer saved
    by the installed transformers, with extra special tokens."""
    from transformers import AutoTokenizer

    repo = hub / ("models--" + HUB_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(tiny_model, snapshot)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.add_special_tokens({"additional_special_tokens": EXTRA})
    tok.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    return snapshot


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    snapshot = cache_under_hub_id(tmp / "hub", tiny_model)
    env = {"HF_HUB_CACHE": str(tmp / "hub")}
    cfg = write_config(tmp, HUB_ID, write_data(tmp / "d.jsonl"),
                       train__max_steps=2, train__save_every=2, eval__every=0)
    r = run_cli("train", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    run = only_run(tmp)
    r = run_cli("export", str(run), env=env)
    assert r.returncode == 0, r.stderr
    return {"run": run, "snapshot": snapshot, "env": env}


def in_fresh_python(code: str, *args: str, env: dict | None = None) -> dict:
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


# The adapter folder alone, as a peft user loads it: the base comes from adapter_config.json.
PEFT_LOAD = """
import json, sys, torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer
folder, text = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoPeftModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
with torch.no_grad():
    logits = model(input_ids=torch.tensor([tok(text)["input_ids"]])).logits[0].tolist()
print(json.dumps({"logits": logits}))
"""


def test_adapter_names_its_hub_base_and_loads_alone_with_peft(exported):
    run = exported["run"]
    # peft records the cache snapshot the base was loaded from; checkpoints and adapter/ name it
    for folder in ("checkpoints/step-2", "adapter"):
        assert json.loads((run / folder / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    assert json.loads((run / "adapter/tunewiz.json").read_text())["base_model"] == HUB_ID

    alone = in_fresh_python(PEFT_LOAD, str(run / "adapter"), PROBE, env=exported["env"])["logits"]
    merged = in_fresh_python(PLAIN_LOAD, str(run / "merged"), PROBE)["logits"]
    assert max(abs(a - b) for ra, rb in zip(alone, merged) for a, b in zip(ra, rb)) < 1e-4


def test_a_checkpoint_naming_the_cache_folder_converts_to_the_hub_id(exported, cli, tmp_path):
    """Checkpoints saved before they named the hub id (peft's own adapter_config.json)."""
    run = make_run(tmp_path / "work_dirs", HUB_ID)
    ckpt = add_lora_checkpoint(run, exported["snapshot"], step=4)
    assert "snapshots" in json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"]
    res = cli("convert", str(run), str(tmp_path / "adapter"), env=exported["env"])
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "adapter/adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    assert (tmp_path / "adapter/tokenizer.json").is_file()  # the hub base's, from the cache


@pytest.mark.parametrize("folder", ["adapter", "merged"])
def test_saved_tokenizer_is_in_the_spelling_both_versions_read(exported, folder):
    from transformers import AutoTokenizer

    base = exported["snapshot"]
    base_cfg = json.loads((base / "tokenizer_config.json").read_text())
    # the spellings transformers 4.x cannot read, as transformers 5 saved them
    assert base_cfg["tokenizer_class"] == "TokenizersBackend" and base_cfg["extra_special_tokens"] == EXTRA

    saved = exported["run"] / folder
    cfg = json.loads((saved / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert cfg["additional_special_tokens"] == EXTRA and "extra_special_tokens" not in cfg
    assert not {"is_local", "local_files_only"} & set(cfg)

    ours, theirs = AutoTokenizer.from_pretrained(saved), AutoTokenizer.from_pretrained(base)
    assert ours(SPECIAL_PROBE)["input_ids"] == theirs(SPECIAL_PROBE)["input_ids"]
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.chat_template == theirs.chat_template


def test_model_cards_say_what_was_trained(exported):
    run = exported["run"]
    loss = f"{losses(run)[2]:.4f}"
    adapter = (run / "adapter/README.md").read_text()
    merged = (run / "merged/README.md").read_text()
    for card in (adapter, merged):
        assert card.startswith("---\nbase_model: tiny-org/tiny-chat\n")
        assert "snapshots" not in card  # never the cache folder the base happened to load from
        assert "r 8, alpha 16, dropout 0.0" in card and "learning rate 0.01" in card
        assert "max_steps 2; batch size 2 per device x grad accumulation 2 x 1 device(s)" in card
        assert "max length 64 tokens, packing on" in card
        assert f"`{run.parent.parent / 'd.jsonl'}`" in card
        assert "step 2 of 2 (run completed)" in card and f"training loss at that step: {loss}" in card
    assert "library_name: peft" in adapter and "AutoPeftModelForCausalLM" in adapter
    assert f"tunewiz chat {HUB_ID} --adapter {run / 'adapter'}" in adapter
    assert "library_name: transformers" in merged and f"tunewiz chat {run / 'merged'}" in merged
    assert "merged into the base's unquantized weights" in merged
    for card in (adapter, merged):  # trained with the tokenizer's own template (auto), saved with it
        assert "the tokenizer's chat template renders the same prompt" in card


def test_full_fine_tune_hf_folder_carries_portable_tokenizer_and_card(cli, tiny_model, tmp_path):
    run = make_run(tmp_path / "work_dirs", tiny_model, method="full", template="internlm2_chat")
    add_full_checkpoint(run, tiny_model, step=7)
    res = cli("convert", str(run), str(tmp_path / "hf"))
    assert res.returncode == 0, res.stderr
    hf = tmp_path / "hf"
    assert json.loads((hf / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    card = (hf / "README.md").read_text()
    assert "library_name: transformers" in card and "A full fine-tune of" in card
    assert "base_model:" not in card  # a local folder is no hub id, so the hub gets no link
    assert "step 7" in card and "training loss: not recorded" in card
    # the tiny model's tokenizer has a ChatML template of its own, kept: the card says so
    assert "the tokenizer keeps the base model's own chat template" in card
    assert in_fresh_python(PLAIN_LOAD, str(hf), PROBE)["logits"]


def test_adapter_without_reachable_base_still_converts_and_says_so(cli, tiny_model, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_model, base)
    run = make_run(tmp_path / "work_dirs", base)
    add_lora_checkpoint(run, base, step=3)
    shutil.rmtree(base)
    res = cli("convert", str(run), str(tmp_path / "adapter"))
    assert res.returncode == 0, res.stderr
    assert "no tokenizer in the adapter folder" in res.stdout
    names = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= names
    assert "tokenizer_config.json" not in names


def test_a_model_specific_tokenizer_class_is_kept():
    cfg = {"tokenizer_class": "Qwen2Tokenizer", "extra_special_tokens": {"image_token": "<img>"}}
    assert portable_config(cfg, has_tokenizer_json=True) == cfg  # a mapping is what 4.x expects too
    assert portable_config({"tokenizer_class": "TokenizersBackend"}, has_tokenizer_json=False) == \
        {"tokenizer_class": "TokenizersBackend"}  # without tokenizer.json there is no fast tokenizer


def test_base_model_name_is_the_hub_id_for_a_cache_folder_and_the_path_otherwise(tmp_path):
    snap = "/home/u/.cache/huggingface/hub/models--Qwen--Qwen2.5-7B-Instruct/snapshots/a09a354"
    assert base_model_name(snap) == "Qwen/Qwen2.5-7B-Instruct"
    assert base_model_name(snap + "/") == "Qwen/Qwen2.5-7B-Instruct"
    assert base_model_name("internlm/internlm2-chat-1_8b") == "internlm/internlm2-chat-1_8b"
    assert base_model_name(str(tmp_path / "my-model")) == str(tmp_path / "my-model")


def test_qlora_card_lists_quantization_and_epochs():
    cfg = Config(name="q", model=ModelConfig(path="Qwen/Qwen2.5-0.5B-Instruct"), method="qlora",
                 lora=LoraConfig(r=16, alpha=32, dropout=0.05, target=["q_proj", "v_proj"]),
                 data=DataConfig(files=["data/a.jsonl"], format="alpaca", template="qwen_chat"),
                 train=TrainConfig(epochs=3, max_steps=None, batch_size=4, grad_accum=8))
    meta = {"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "method": "qlora", "stage": "sft",
            "template": "qwen_chat", "system": "", "step": 90}
    card = render("adapter", meta, "/runs/q/adapter", cfg, Result(step=90, total_steps=90, loss=0.51234,
                                                                  world_size=2, status="completed"))
    assert "base_model: Qwen/Qwen2.5-0.5B-Instruct" in card and "- qlora" in card and "- lora" in card
    assert "QLoRA" in card and "4-bit nf4, double quantization on" in card
    assert 'target modules `["q_proj", "v_proj"]`' in card
    assert "epochs 3; batch size 4 per device x grad accumulation 8 x 2 device(s) = 64" in card
    assert "(format: alpaca)" in card and "training loss at that step: 0.5123" in card

    demo = render("merged", {**meta, "base_model": "demo", "method": "lora"}, "/runs/d/merged")
    assert "base_model:" not in demo and "`demo` (the bundled SmolLM2-135M-Instruct" in demo
    assert "training loss: not recorded" in demo and "tunewiz chat /runs/d/merged" in demo
