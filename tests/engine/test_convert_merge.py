"""convert and merge through the real CLI, on the tiny model.

The merged folder is loaded in a fresh interpreter with plain transformers, and its logits
must equal base + adapter computed with peft here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.adapter_fixtures import (PLAIN_LOAD, PROBE, add_full_checkpoint, add_lora_checkpoint, copy_without_chat_template,
                              logits_with_adapter, make_run)


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("work_dirs"), tiny_model, method="lora", system="Be kind.")
    add_lora_checkpoint(run, tiny_model, step=5, seed=1)
    add_lora_checkpoint(run, tiny_model, step=10, seed=2)
    return run


def plain_load(folder: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(folder), PROBE], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def max_diff(a, b) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def assertone_line_error(res, *words):
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunewiz: error:"), res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_convert_run_takes_newest_checkpoint_and_writes_clean_adapter(cli, lora_run, tmp_path):
    out = tmp_path / "adapter"
    res = cli("convert", str(lora_run), str(out))
    assert res.returncode == 0, res.stderr
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tunewiz.json"} <= names
    assert not names & {"optimizer.pt", "trainer_state.json"}
    meta = json.loads((out / "tunewiz.json").read_text())
    assert meta["step"] == 10 and meta["method"] == "lora" and meta["stage"] == "sft"
    assert meta["template"] == "auto" and meta["system"] == "Be kind."
    assert Path(meta["base_model"]) == Path(json.loads((out / "adapter_config.json").read_text())
                                            ["base_model_name_or_path"]).resolve()
    assert meta["source"].endswith("step-10")
    ckpt_bytes = (lora_run / "checkpoints/step-10/adapter_model.safetensors").read_bytes()
    assert (out / "adapter_model.safetensors").read_bytes() == ckpt_bytes


def test_convert_again_to_same_out_is_safe_and_picks_given_checkpoint(cli, lora_run, tmp_path):
    out = tmp_path / "adapter"
    assert cli("convert", str(lora_run), str(out)).returncode == 0
    res = cli("convert", str(lora_run / "checkpoints/step-5"), str(out))
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "tunewiz.json").read_text())["step"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_convert_refuses_unrelated_non_empty_out(cli, lora_run, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assertone_line_error(cli("convert", str(lora_run), str(out)), "not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_convert_bad_sources_exit_1(cli, tiny_model, tmp_path):
    assertone_line_error(cli("convert", str(tmp_path / "nope"), str(tmp_path / "o")), "does not exist")
    empty_run = make_run(tmp_path, tiny_model)
    assertone_line_error(cli("convert", str(empty_run), str(tmp_path / "o")), "no complete checkpoint")
    assert not (tmp_path / "o").exists()


def test_merge_matches_base_plus_adapter_in_plain_transformers(cli, tiny_model, lora_run, tmp_path):
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    assert cli("convert", str(lora_run), str(adapter)).returncode == 0
    res = cli("merge", str(tiny_model), str(adapter), str(merged), "--max-shard-size", "100KB")
    assert res.returncode == 0, res.stderr
    assert "[1/3]" in res.stdout and "[3/3]" in res.stdout
    assert len(list(merged.glob("model-*.safetensors"))) > 1  # really sharded
    assert (merged / "tokenizer.json").is_file()
    meta = json.loads((merged / "tunewiz.json").read_text())
    assert meta["step"] == 10 and meta["system"] == "Be kind."

    loaded = plain_load(merged)
    assert not loaded["tunewiz_loaded"]
    expected = logits_with_adapter(tiny_model, adapter)
    base_only = logits_with_adapter(tiny_model, None)
    assert max_diff(loaded["logits"], expected) < 1e-4
    assert max_diff(loaded["logits"], base_only) > 1e-3  # the adapter changed something

    # Merging again into the same OUT is a re-run, not a clash.
    assert cli("merge", str(tiny_model), str(adapter), str(merged)).returncode == 0
    assert (merged / "tunewiz.json").is_file()


def test_merge_bad_inputs_exit_1(cli, tiny_model, lora_run, tmp_path):
    adapter = tmp_path / "adapter"
    assert cli("convert", str(lora_run), str(adapter)).returncode == 0
    assertone_line_error(cli("merge", str(tiny_model), str(tmp_path / "missing"), str(tmp_path / "m")),
                          "does not exist")
    assertone_line_error(cli("merge", str(tmp_path / "no-base"), str(adapter), str(tmp_path / "m")),
                          "does not exist")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assertone_line_error(cli("merge", str(tiny_model), str(adapter), str(busy)), "not empty")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("template", ["internlm2_chat", "default"])
def test_merge_writes_named_template_matching_encoder(cli, tiny_model, tmp_path, template):
    from transformers import AutoTokenizer

    from tunewiz.engine.encode import Encoder

    base = copy_without_chat_template(tiny_model, tmp_path / "base")
    run = make_run(tmp_path / "work_dirs", base, template=template, system="You help.")
    add_lora_checkpoint(run, base, step=3)
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    assert cli("convert", str(run), str(adapter)).returncode == 0
    res = cli("merge", str(base), str(adapter), str(merged))
    assert res.returncode == 0, res.stderr

    tok = AutoTokenizer.from_pretrained(merged)
    assert tok.chat_template
    conversation = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I help."},
                    {"role": "user", "content": "请介绍一下你自己"}]
    rendered = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=True)
    expected = Encoder(AutoTokenizer.from_pretrained(base), template, system="You help.").prompt_ids(conversation)
    assert rendered["input_ids"] == expected


def test_full_checkpoint_converts_and_reshards(cli, tiny_model, tmp_path):
    run = make_run(tmp_path / "work_dirs", tiny_model, method="full")
    add_full_checkpoint(run, tiny_model, step=7)
    hf, merged = tmp_path / "hf", tmp_path / "merged"
    res = cli("convert", str(run), str(hf))
    assert res.returncode == 0, res.stderr
    assert (hf / "model.safetensors").is_file() and (hf / "tokenizer.json").is_file()
    assert not (hf / "optimizer.pt").exists()
    assert json.loads((hf / "tunewiz.json").read_text())["method"] == "full"

    res = cli("merge", str(tiny_model), str(hf), str(merged), "--max-shard-size", "100KB")
    assert res.returncode == 0, res.stderr
    assert len(list(merged.glob("model-*.safetensors"))) > 1
    expected = logits_with_adapter(hf, None)
    assert max_diff(plain_load(merged)["logits"], expected) < 1e-5
    assert max_diff(expected, logits_with_adapter(tiny_model, None)) > 1e-3
