"""The memory estimate against peaks measured on real runs, and the rules it shares with the engine.

The measured figures are the step events' mem_gib (torch.cuda.max_memory_allocated on a
GPU, peak resident memory on the CPU) of tunewiz runs recorded in docs/memory.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunewiz.engine.contract import memory_estimate as me
from tunewiz.engine.contract.config import config_from_dict
from tunewiz.engine.contract.model_facts import read_model_facts

from support.model_shapes import SHAPES  # InternLM2 shapes as bench_models.py writes them, and the demo


def model_folder(root: Path, shape: str, dtype: str = "bfloat16") -> Path:
    """A model folder with only its config.json: all the estimate reads."""
    folder = root / shape
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": dtype, **SHAPES[shape]}))
    return folder


def config(method="lora", batch=4, ckpt=False, seq=2048, deepspeed="none", compile="auto", stage="pretrain", **train):
    return config_from_dict({
        "model": {"path": "m"}, "method": method, "stage": stage,
        "data": {"files": ["d.jsonl"], "max_length": seq},
        "train": {"batch_size": batch, "gradient_checkpointing": ckpt, "compile": compile, **train},
        "layout": {"deepspeed": deepspeed}})


# (shape, method, batch, checkpointing, GPUs (0 = CPU), ZeRO, compile, measured GiB, where)
MEASURED = {
    "lora-b4": ("1.8b", "lora", 4, False, 1, "none", "auto", 26.1, "docs/bench.md, one H200"),
    "lora-b4-uncompiled": ("1.8b", "lora", 4, False, 1, "none", False, 32.4, "docs/bench.md, one H200"),
    "lora-b8": ("1.8b", "lora", 8, False, 1, "none", "auto", 47.8, "docs/bench.md, one H200"),
    "qlora-b8-ckpt": ("1.8b", "qlora", 8, True, 1, "none", "auto", 6.5, "docs/bench.md, bf16 QLoRA wrap, one H200"),
    "full-b4": ("1.8b", "full", 4, False, 1, "none", "auto", 27.3, "docs/bench.md, one H200"),
    "qlora7b-b1-ckpt": ("7b", "qlora", 1, True, 1, "none", "auto", 8.0, "docs/bench.md, one H200"),
    "lora-b4-ckpt": ("1.8b", "lora", 4, True, 1, "none", "auto", 6.5, "bench_memory.py, one H200"),
    "qlora-b4": ("1.8b", "qlora", 4, False, 1, "none", "auto", 24.0, "bench_memory.py, one H200"),
    "full-b2-ckpt": ("1.8b", "full", 2, True, 1, "none", "auto", 14.2, "bench_memory.py, one H200"),
    "zero2-full-2gpu": ("1.8b", "full", 1, True, 2, "zero2", "auto", 18.2, "docs/gpu.md, 2 x H200"),
    "zero3-full-2gpu": ("1.8b", "full", 1, True, 2, "zero3", "auto", 17.6, "docs/gpu.md, 2 x H200"),
    "zero2-lora-2gpu": ("1.8b", "lora", 1, True, 2, "zero2", "auto", 5.9, "docs/gpu.md, 2 x H200"),
    "zero3-lora-2gpu": ("1.8b", "lora", 1, True, 2, "zero3", "auto", 6.6, "docs/gpu.md, 2 x H200"),
}


@pytest.mark.parametrize("case", MEASURED)
def test_the_estimate_is_within_15_percent_of_measured_gpu_peaks(case, tmp_path):
    shape, method, batch, ckpt, gpus, deepspeed, compile, measured, _ = MEASURED[case]
    facts = read_model_facts(model_folder(tmp_path, shape))
    est = me.estimate(config(method, batch, ckpt, deepspeed=deepspeed, compile=compile), facts, gpus)
    assert est is not None and not est.on_cpu
    assert abs(est.peak_gib / measured - 1) <= 0.15, (case, est.describe(), measured)
    # What must fit the GPU is more than what the allocator counts.
    assert est.needed_gib > est.peak_gib + me.CUDA_CONTEXT_GIB


# The demo model on a CPU (fp32, peak resident memory of the real CLI: `/usr/bin/time -v
# tunewiz train CONFIG`, rows of 256 tokens, 3 steps, eval off, as docs/memory.md lists; and
# the whole presets/demo-assistant.yaml run, 20 steps with its evals and checkpoints):
# (method, batch, checkpointing, stage, GiB).
MEASURED_CPU = {
    "lora-b4": ("lora", 4, False, "pretrain", 4.73),
    "lora-b8": ("lora", 8, False, "pretrain", 7.58),
    "lora-b1-ckpt": ("lora", 1, True, "pretrain", 1.51),
    "lora-b2-ckpt": ("lora", 2, True, "pretrain", 1.77),
    "lora-b4-ckpt": ("lora", 4, True, "pretrain", 2.40),
    "lora-b4-ckpt, again": ("lora", 4, True, "pretrain", 2.63),
    "full-b2-ckpt": ("full", 2, True, "pretrain", 2.86),
    "full-b4-ckpt": ("full", 4, True, "pretrain", 2.99),
    "demo-assistant preset": ("lora", 4, False, "sft", 5.13),
}


@pytest.mark.parametrize("case", MEASURED_CPU)
def test_the_cpu_estimate_matches_demo_runs(case, tmp_path):
    method, batch, ckpt, stage, measured = MEASURED_CPU[case]
    facts = read_model_facts(model_folder(tmp_path, "demo", dtype="float32"))   # as `tunewiz demo` converts it
    est = me.estimate(config(method, batch, ckpt, seq=256, compile=False, stage=stage), facts, 0)
    assert est.on_cpu and "of RAM" in est.describe() and est.needed_gib == est.peak_gib
    assert abs(est.peak_gib / measured - 1) <= 0.15, est.describe()


def test_a_cpu_checkpoint_counts_once_and_a_converted_one_only_while_loading(tmp_path):
    """An fp32 checkpoint's mapped pages are the weights; a bf16 one is copied into fp32 and
    unmapped, so it adds to the peak only where loading is above the training's own peak."""
    cfg = config("lora", 1, True, seq=256, compile=False)
    for sub in "abc":
        (tmp_path / sub).mkdir()
    fp32 = me.estimate(cfg, read_model_facts(model_folder(tmp_path / "a", "demo", dtype="float32")), 0)
    assert fp32.parts["process"] == me.CPU_PROCESS_BASE_GIB
    # The demo's adapter and activations outweigh its bf16 checkpoint's 0.25 GiB.
    bf16 = me.estimate(cfg, read_model_facts(model_folder(tmp_path / "b", "demo")), 0)
    assert bf16.peak_gib == pytest.approx(fp32.peak_gib)
    # A 7B checkpoint in bf16 (13 GiB) outweighs a checkpointed LoRA's training state.
    big = me.estimate(cfg, read_model_facts(model_folder(tmp_path / "c", "7b")), 0)
    training = sum(v for k, v in big.parts.items() if k not in ("model", "process"))
    assert big.parts["process"] == pytest.approx(me.CPU_PROCESS_BASE_GIB + big.parts["model"] / 2 - training)


def test_the_old_estimate_was_four_times_low_on_the_cpu(tmp_path):
    """The review step said about 1.7 GiB for the preset's run; the new estimate must not."""
    facts = read_model_facts(model_folder(tmp_path, "demo", dtype="float32"))
    assert me.estimate(config("lora", 4, False, seq=256, compile=False), facts, 0).peak_gib > 3.5


def test_each_setting_moves_the_estimate_the_way_it_should(tmp_path):
    facts = read_model_facts(model_folder(tmp_path, "1.8b"))

    def peak(gpus=1, **kw):
        return me.estimate(config(**kw), facts, gpus).peak_gib

    assert peak(ckpt=True) < peak(ckpt=False) / 3
    assert peak(batch=8) > peak(batch=4) > peak(batch=2)
    assert peak(seq=4096) > peak(seq=2048)
    assert peak(method="qlora") < peak(method="lora") < peak(method="full")
    # Full fine-tuning's states split over 4 GPUs, more with each ZeRO stage and offload.
    stages = ("zero1", "zero2", "zero3", "zero3_offload")
    zero = [peak(gpus=4, method="full", ckpt=True, deepspeed=s) for s in stages]
    assert zero == sorted(zero, reverse=True)
    states = [me.estimate(config("full", ckpt=True, deepspeed=s), facts, 4).parts["grads+optimizer"] for s in stages]
    # ZeRO-1 keeps 2 bytes of grads + 12 / 4 of states per parameter; offload only the grads' 2 / 4
    assert states[3] == pytest.approx(states[0] / 10)
    # DDP (no DeepSpeed) holds everything on every GPU, and its buckets copy the grads once more.
    assert peak(gpus=4, method="full", ckpt=True) > peak(gpus=1, method="full", ckpt=True) + 3
    # More GPUs shrink a ZeRO-3 share; without DeepSpeed every GPU holds everything.
    assert peak(gpus=8, method="full", deepspeed="zero3") < peak(gpus=2, method="full", deepspeed="zero3")
    assert me.estimate(config(), facts, 8, world=8).parts["model"] == me.estimate(config(), facts, 1).parts["model"]
    # Compiled layers keep less; the CPU (fp32) keeps more.
    assert peak(compile="auto") < peak(compile=False) < peak(gpus=0, compile=False)
    # The fused loss never holds [tokens x vocab] logits; the model's own loss (DeepSpeed) does.
    fused = me.estimate(config(ckpt=True), facts, 1).parts["loss"]
    own = me.estimate(config(ckpt=True, fused_loss=False), facts, 1).parts["loss"]
    assert fused < 0.5 < 4 * 2048 * 92544 * 10 / me.GIB <= own + 1e-9


def test_lora_targets_and_rank_set_the_adapter_size(tmp_path):
    facts = read_model_facts(model_folder(tmp_path, "1.8b"))
    shape = me.shape_of(facts)
    # InternLM2-1.8B LoRA r 64 on every linear layer: 69.2M parameters.
    assert me.lora_params(shape, 64) == 24 * 64 * (4096 + 3072 * 2 + 4096 + 10240 * 3)
    assert me.lora_params(shape, 64, ["q_proj", "v_proj"]) == 24 * 64 * (4096 + 3072)
    assert me.lora_params(shape, 64, ["wqkv"]) == 24 * 64 * (4096 + 3072 * 2)   # InternLM2's own names
    assert me.lora_params(shape, 8) == me.lora_params(shape, 64) // 8
    # The estimate's parameter count is model_facts' (the wizard shows that one).
    assert shape.params == facts.params


def test_the_estimate_decides_compile_and_loss_as_the_engine_does(tmp_path):
    from tunewiz.engine import fused_loss
    from tunewiz.engine.step_speed import should_compile

    assert me.FUSED_ARCHITECTURES == fused_loss.ARCHITECTURES
    facts = read_model_facts(model_folder(tmp_path, "1.8b"))
    for setting in ("auto", True, False):
        for deepspeed in ("none", "zero2"):
            for devices in (0, 1, 2):
                where = me.situation(config(compile=setting, deepspeed=deepspeed), facts, devices)
                device = "cuda:0" if devices else "cpu"
                assert where.compiled == should_compile(setting, device, deepspeed, max(1, devices))[0]
                assert where.fused_loss == (deepspeed == "none")


def test_a_config_json_without_sizes_has_no_estimate(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert me.estimate(config(), read_model_facts(tmp_path), 1) is None


def test_fixes_name_changes_that_do_fit(tmp_path):
    facts = read_model_facts(model_folder(tmp_path, "1.8b"))
    cfg = config("lora", 8, False)
    found = me.fixes(cfg, facts, 1, capacity_gib=40)
    keys = [f.key for f in found]
    assert keys[:2] == ["train.gradient_checkpointing", "train.batch_size"]
    assert found[1].value == 4 and "train.grad_accum to 32" in found[1].text
    for fix in found:
        section, _, name = fix.key.partition(".")
        changed = config_from_dict({**_as_dict(cfg), **({section: {**_as_dict(cfg)[section], name: fix.value}}
                                                       if name else {section: fix.value})})
        assert me.estimate(changed, facts, 1).needed_gib <= 40
    assert me.advice(found) == ("set train.gradient_checkpointing: true or lower train.batch_size to 4 "
                                "(and train.grad_accum to 32 for the same batch)")
    # A 70B full fine-tune on 8 x 80 GiB: nothing but a lighter method or ZeRO-3 helps.
    big = read_model_facts(model_folder(tmp_path, "70b"))
    found = me.fixes(config("full", 1, True), big, 8, capacity_gib=80)
    assert [f.key for f in found] in (["layout.deepspeed", "method"], ["method"])
    assert all("batch_size" not in f.key for f in found)
    # Nothing fits: no advice at all.
    assert me.fixes(config("qlora", 1, True, seq=256), big, 1, capacity_gib=4) == []


def _as_dict(cfg):
    from dataclasses import asdict

    return asdict(cfg)


def test_the_data_estimate_counts_files_and_names_what_it_cannot(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "x" * 3998}) + "\n")   # 4,011 bytes
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "a.json").write_text("[]" * 1000)
    (folder / "notes.txt").write_text("not data" * 100)
    est = me.estimate_data([str(data), str(folder), "owner/hub-set"])
    assert est.file_bytes == data.stat().st_size + 2000
    assert est.tokens == -(-est.file_bytes // me.FILE_BYTES_PER_TOKEN)
    assert est.cache_gib == est.tokens * me.STORE_BYTES_PER_TOKEN / me.GIB
    text = est.describe()
    assert "tokenized cache" in text and "not counted: owner/hub-set" in text
    assert "size unknown" in me.estimate_data(["owner/hub-set"]).describe()
