"""A GPU run of several processes, or under DeepSpeed, says which single-GPU speed paths it
leaves off and why: the recipe's own decisions on the tiny model, for a CUDA runtime of each
layout (the decisions read the device name and layout only, so no GPU is needed to check them;
the runs themselves are bench/bench_multi_gpu.py's on a GPU machine)."""

from __future__ import annotations

import pytest

from tunewiz.engine.contract.config import config_from_dict
from tunewiz.engine.contract.events import EventWriter, read_events
from tunewiz.engine.runtime import Runtime
from tunewiz.engine.train import Recipe


def recipe(tmp_path, tiny_model, world: int, deepspeed: str, **train) -> Recipe:
    import torch

    cfg = config_from_dict({"name": "t", "model": {"path": str(tiny_model)}, "method": "lora",
                            "data": {"files": ["d.jsonl"]}, "train": train,
                            "layout": {"gpus": world, "deepspeed": deepspeed}})
    r = Recipe(cfg, tmp_path, Runtime(rank=0, local_rank=0, world_size=world, device="cuda:0"),
               EventWriter(tmp_path / "events.jsonl"))
    r.dtype = torch.float32       # no autocast: the adapters' casts stay as they are
    r.model_path = str(tiny_model)
    return r


def said(tmp_path) -> list[str]:
    return [e["msg"] for e in read_events(tmp_path / "events.jsonl") if e["type"] == "log"]


def tiny(tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model)


def test_ddp_says_compile_auto_leaves_it_uncompiled(tiny_model, tmp_path):
    r = recipe(tmp_path, tiny_model, world=2, deepspeed="none")
    model = tiny(tiny_model)
    assert r._speed_up(model) is False
    assert said(tmp_path) == ["train.compile: auto leaves this run uncompiled: compiled layers are not yet "
                              "measured with several processes; train.compile: true compiles them"]
    assert r._loss_kind(model) == "fused"          # the fused loss reaches DDP, nothing to say
    assert len(said(tmp_path)) == 1


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_says_why_compile_fused_loss_and_auto_batch_are_off(tiny_model, tmp_path, stage):
    # One process: the auto_batch decision broadcasts rank 0's choice, a no-op for a world of one.
    r = recipe(tmp_path, tiny_model, world=1, deepspeed=stage)
    model = tiny(tiny_model)
    assert r._speed_up(model) is False
    assert r._loss_kind(model) == "model"
    cfg = r._auto_batch(r.cfg)
    assert r.batch_choice is None and cfg.train.batch_size == r.cfg.train.batch_size
    lines = said(tmp_path)
    assert lines[0].startswith("train.compile: auto leaves this run uncompiled: DeepSpeed")
    assert lines[1] == ("train.fused_loss is on, but DeepSpeed runs the model's own loss: this run uses the "
                        "model's own loss")
    assert lines[2].startswith("train.auto_batch is on, but not under DeepSpeed")
    assert len(lines) == 3


def test_compile_true_under_deepspeed_is_a_warning_and_false_says_nothing(tiny_model, tmp_path):
    r = recipe(tmp_path, tiny_model, world=1, deepspeed="zero2", compile=True)
    assert r._speed_up(tiny(tiny_model)) is False
    [ev] = [e for e in read_events(tmp_path / "events.jsonl") if e["type"] == "log"]
    assert ev["level"] == "warning" and "compiling applies to CUDA runs without DeepSpeed" in ev["msg"]
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    r = recipe(quiet, tiny_model, world=2, deepspeed="none", compile=False)
    assert r._speed_up(tiny(tiny_model)) is False and said(quiet) == []


def test_a_gpu_run_that_auto_keeps_off_the_varlen_kernel_says_why(tiny_model, tmp_path):
    import torch

    from tunewiz.engine.attention import varlen_kernel_available

    r = recipe(tmp_path, tiny_model, world=2, deepspeed="zero3")
    r.attn_backend = "varlen"
    r._say_attention()
    assert said(tmp_path) == []                     # on: the start event's `attention` says so
    r.attn_backend = "sdpa"                         # what load_model falls back to
    r._say_attention()
    r.dtype = torch.bfloat16
    r._say_attention()
    lines = said(tmp_path)
    assert len(lines) == 2 and all(m.startswith("train.attention: auto runs sdpa attention here: ") for m in lines)
    if varlen_kernel_available("cuda:0"):           # this torch has the kernel: the dtype, then the model
        assert "takes bf16 or fp16, and this run trains in float32" in lines[0]
        assert "this model's attention code" in lines[1]
    else:
        assert all("no varlen kernel" in m for m in lines)
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    r = recipe(quiet, tiny_model, world=2, deepspeed="none", attention="sdpa")
    r.attn_backend = "sdpa"
    r._say_attention()                              # asked for by name: nothing to explain
    assert said(quiet) == []
