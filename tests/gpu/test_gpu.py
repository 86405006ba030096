"""GPU behaviour: QLoRA / bf16, DeepSpeed ZeRO on several GPUs, ZeRO-3 convert, OOM.

Marked `gpu` and skipped without CUDA; run on a GPU machine with `make test-gpu` (or
`pytest -m gpu`). Multi-GPU tests also skip with fewer than two GPUs or no DeepSpeed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import read_events
from support.runs import only_run, write_config, write_data

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2 or importlib.util.find_spec("deepspeed") is None,
                              reason="needs 2 GPUs and deepspeed")
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")
needs_bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")


def losses(run: Path) -> list[float]:
    return [e["loss"] for e in read_events(run / "events.jsonl") if e["type"] == "step"]


def completed(r, run: Path) -> dict:
    logs = "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted((run / "logs").glob("*.log")))
    assert r.returncode == 0, r.stderr[-2000:] + logs
    evs = read_events(run / "events.jsonl")
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed", evs[-3:]
    return next(e for e in evs if e["type"] == "start")


def merged_logits_match(base: Path, merged: Path, adapter: Path | None) -> None:
    """The merged folder loads with plain transformers in a fresh process and agrees."""
    code = f"""
import torch, sys
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({str(merged)!r}, dtype=torch.float32)
ids = torch.tensor([[1, 5, 9, 20, 33]])
print(float(m(ids).logits.abs().sum()))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip().splitlines()[-1]) > 0


def resume_for_more_steps(cli, run: Path, steps: int) -> None:
    """Continue a finished run from its last checkpoint up to `steps` (what a user does to
    train longer): the optimizer, scheduler and RNG state load on the GPU too."""
    last = rundir.checkpoints(run)[-1]
    conf = yaml.safe_load((run / "config.yaml").read_text())
    conf["train"]["max_steps"] = steps
    (run / "config.yaml").write_text(yaml.safe_dump(conf))
    r = cli("train", str(run), "--resume")
    completed(r, run)
    start = [e for e in read_events(run / "events.jsonl") if e["type"] == "start"][-1]
    assert start["resumed_from"] == str(last)
    assert max(e["step"] for e in read_events(run / "events.jsonl") if e["type"] == "step") == steps


@pytest.mark.parametrize("method", [pytest.param("qlora", marks=needs_bnb), "lora", "full"])
def test_one_gpu_trains_resumes_converts_merges_and_chats(tiny_model, tmp_path, cli, method):
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl", n=32), method=method,
                       train__max_steps=20, train__save_every=10, train__lr=1e-3 if method == "full" else 5e-3,
                       lora={"r": 16, "alpha": 32, "dropout": 0.0}, layout={"gpus": 1})
    r = cli("train", str(cfg))
    run = only_run(tmp_path)
    start = completed(r, run)
    assert start["device"].startswith("cuda") and start["dtype"] in ("bfloat16", "float16")
    assert start["world_size"] == 1
    assert start["attention"] == "varlen"  # auto on a GPU: the flash kernel on packed rows
    assert start["loss"] == "fused"  # the output layer stays unquantized under QLoRA too
    got = losses(run)
    assert got[-1] < got[0]
    resume_for_more_steps(cli, run, 24)
    out = run / ("hf" if method == "full" else "adapter")
    r = cli("convert", str(run), str(out))
    assert r.returncode == 0, r.stderr
    if method == "full":
        merged_logits_match(tiny_model, out, None)
        r = cli("chat", str(out), "--prompt", "Who are you?", "--max-new-tokens", "8")
        assert r.returncode == 0, r.stderr
        return
    r = cli("merge", str(tiny_model), str(out), str(run / "merged"))
    assert r.returncode == 0, r.stderr
    merged_logits_match(tiny_model, run / "merged", out)
    bits = ["--bits", "4"] if method == "qlora" else []
    r = cli("chat", str(tiny_model), "--adapter", str(out), *bits, "--prompt", "Who are you?",
            "--max-new-tokens", "8")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_varlen_flash_kernel_matches_sdpa_on_packed_rows(tiny_model, dtype):
    """The flash varlen backend gives sdpa's (block-diagonal mask) loss and gradients, with
    GQA (4 query heads, 2 key/value heads), several samples per row and a padded row."""
    import random

    from transformers import AutoModelForCausalLM

    from tunewiz.engine import attention
    from tunewiz.engine.encode import Encoded
    from tunewiz.engine.packing import collate, pack

    rng = random.Random(3)
    samples = [Encoded(ids, ids) for ids in ([rng.randrange(10, 300) for _ in range(n)]
                                             for n in (100, 37, 250, 12, 64, 90, 5))]
    batch = {k: v.cuda() for k, v in collate(pack(samples, max_length=256), pad_id=0).items()}
    assert batch["input_ids"].shape[0] >= 2
    results = {}
    for attn in ("sdpa", "varlen"):
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=getattr(torch, dtype),
                                                 attn_implementation=attention.implementation(attn, "cuda")).cuda()
        m.config.use_cache = False
        extra = attention.sample_lengths(batch["position_ids"].cpu()) if attn == "varlen" else {}
        extra = {k: v.cuda() if hasattr(v, "cuda") else v for k, v in extra.items()}
        loss = m(**batch, **extra).loss
        loss.backward()
        results[attn] = (loss.float().item(), torch.cat([p.grad.float().flatten() for p in m.parameters()]))
    (l_ref, g_ref), (l_var, g_var) = results["sdpa"], results["varlen"]
    assert l_var == pytest.approx(l_ref, rel=1e-2)
    cos = torch.nn.functional.cosine_similarity(g_var, g_ref, dim=0).item()
    assert cos > 0.999, cos
    print(f"varlen vs sdpa ({dtype}): loss {l_var:.5f} vs {l_ref:.5f}, gradient cosine {cos:.6f}")


@pytest.mark.parametrize("ckpt", [False, True])
def test_compiled_layers_train_like_eager(tiny_model, tmp_path, cli, ckpt):
    """train.compile (auto, the default, compiles a one-GPU run): the same losses as an
    uncompiled run (bf16 rounding apart), eval answers in between (generation runs
    uncompiled), with and without checkpointing."""
    data = write_data(tmp_path / "d.jsonl", n=32)
    curves = {}
    for setting in (False, "auto"):
        compiled = setting == "auto"
        d = tmp_path / f"c{int(compiled)}"
        d.mkdir()
        cfg = write_config(d, tiny_model, data, train__max_steps=10, train__save_every=5, train__lr=5e-3,
                           train__compile=setting, train__gradient_checkpointing=ckpt, train__auto_batch=False,
                           eval={"inputs": ["Who are you?"], "every": 5, "max_new_tokens": 8},
                           lora={"r": 16, "alpha": 32, "dropout": 0.0}, layout={"gpus": 1})
        r = cli("train", str(cfg))
        run = only_run(d)
        completed(r, run)
        logs = " ".join(e["msg"] for e in read_events(run / "events.jsonl") if e["type"] == "log")
        assert ("compiling" in logs) == compiled
        assert [e["step"] for e in read_events(run / "events.jsonl") if e["type"] == "eval"] == [0, 5, 10]
        curves[compiled] = losses(run)
    assert curves[True] == pytest.approx(curves[False], rel=2e-2)


fp8_gpu = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9)
                             or importlib.util.find_spec("torchao") is None,
                             reason="needs a GPU of compute capability 8.9+ and torchao")


@fp8_gpu
def test_full_fine_tuning_trains_in_fp8_by_default_and_learns_like_bf16(tiny_model, tmp_path, cli):
    """train.float8: auto puts a compiled full fine-tuning run's decoder products in FP8:
    its losses follow the bf16 run's (FP8 rounding apart), the eval answers (generated
    uncompiled, through the FP8 layers) come out, it resumes, and what it converts to
    loads with plain transformers: the saved weights are the plain bf16 ones."""
    data = write_data(tmp_path / "d.jsonl", n=32)
    curves = {}
    for setting in (False, "auto"):
        d = tmp_path / f"fp8-{setting}"
        d.mkdir()
        cfg = write_config(d, tiny_model, data, method="full", train__max_steps=12, train__save_every=6,
                           train__lr=1e-3, train__float8=setting, train__auto_batch=False,
                           eval={"inputs": ["Who are you?"], "every": 6, "max_new_tokens": 8}, layout={"gpus": 1})
        r = cli("train", str(cfg))
        run = only_run(d)
        start = completed(r, run)
        assert start["compiled"] is True and start["float8"] is (setting == "auto")
        logs = " ".join(e["msg"] for e in read_events(run / "events.jsonl") if e["type"] == "log")
        assert ("FP8 matrix products in 14 decoder Linear layers" in logs) == (setting == "auto"), logs
        assert [e["step"] for e in read_events(run / "events.jsonl") if e["type"] == "eval"] == [0, 6, 12]
        curves[setting] = losses(run)
    fp8, bf16 = curves["auto"], curves[False]
    assert fp8[-1] < fp8[0]
    assert fp8 == pytest.approx(bf16, rel=5e-2), (fp8, bf16)
    resume_for_more_steps(cli, run, 14)
    out = run / "hf"
    r = cli("convert", str(run), str(out))
    assert r.returncode == 0, r.stderr
    merged_logits_match(tiny_model, out, None)


@pytest.mark.parametrize("method", [pytest.param("qlora", marks=needs_bnb), "lora"])
def test_the_input_table_in_host_memory_trains_the_same_on_less_gpu_memory(tmp_path, cli, method):
    """train.host_embedding (the default for adapters): the same losses as the table on the
    GPU, the table's bytes off the step's peak, and the eval answers (token ids on the GPU)
    still come out. A 65,536 x 256 table: 32 MiB in bf16, clear of the peak's rounding."""
    from support.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "wide-vocab", vocab_size=65536, hidden_size=256, intermediate_size=512)
    data = write_data(tmp_path / "d.jsonl", n=32)
    curves, peaks = {}, {}
    for host in (False, True):
        d = tmp_path / f"host{int(host)}"
        d.mkdir()
        cfg = write_config(d, model, data, method=method, train__max_steps=6, train__lr=1e-3,
                           train__host_embedding=host, train__auto_batch=False, train__batch_size=2,
                           train__grad_accum=2, eval={"inputs": ["Who are you?"], "every": 3, "max_new_tokens": 8},
                           layout={"gpus": 1})
        r = cli("train", str(cfg))
        run = only_run(d)
        assert completed(r, run)["host_embedding"] is host
        events = read_events(run / "events.jsonl")
        logs = " ".join(e["msg"] for e in events if e["type"] == "log")
        assert ("input embedding table in host memory (0.03 GiB off the GPU" in logs) is host, logs
        assert [e["step"] for e in events if e["type"] == "eval"] == [0, 3, 6]
        curves[host], peaks[host] = losses(run), max(e["mem_gib"] for e in events if e["type"] == "step")
    assert curves[True] == pytest.approx(curves[False], rel=1e-3)
    assert peaks[False] - peaks[True] >= 0.9 * 65536 * 256 * 2 / 2**30, peaks


def test_auto_batch_regroups_the_step_and_learns_the_same(tiny_model, tmp_path, cli):
    """A preset's 1 x 16 with checkpointing becomes bigger micro-batches without it on a GPU
    (train.auto_batch, the default), and trains to the same losses as the config as written:
    each optimizer step still holds the same 16 sequences."""
    data = write_data(tmp_path / "d.jsonl", n=64)
    curves, starts = {}, {}
    for auto in (False, True):
        d = tmp_path / f"auto{int(auto)}"
        d.mkdir()
        cfg = write_config(d, tiny_model, data, train__max_steps=6, train__lr=5e-3, train__batch_size=1,
                           train__grad_accum=16, train__gradient_checkpointing=True, train__auto_batch=auto,
                           train__compile=False, lora={"r": 16, "alpha": 32, "dropout": 0.0}, layout={"gpus": 1})
        r = cli("train", str(cfg))
        run = only_run(d)
        starts[auto] = completed(r, run)
        curves[auto] = losses(run)
    assert starts[False]["auto_batch"] is None
    chosen = starts[True]["auto_batch"]
    assert chosen["batch_size"] * chosen["grad_accum"] == 16 and chosen["batch_size"] > 1
    assert chosen["gradient_checkpointing"] is False        # a tiny model fits without it
    assert starts[True]["config"]["train"]["batch_size"] == chosen["batch_size"]
    assert curves[True] == pytest.approx(curves[False], rel=2e-2)


@pytest.mark.whole_gpu
def test_oom_ends_with_a_hint_and_keeps_the_checkpoint(tmp_path, cli):
    """Out of memory: an `oom` error naming what to try; the last checkpoint resumes."""
    from support.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "wide", hidden_size=2048, intermediate_size=4096, vocab_size=92544,
                             max_position_embeddings=131072)
    words = " ".join(f"word{i % 97} lighthouse" for i in range(40000))
    data = tmp_path / "long.jsonl"
    data.write_text("\n".join(json.dumps({"text": words}) for _ in range(16)) + "\n")
    cfg = write_config(tmp_path, model, data, stage="pretrain", train__max_steps=4, train__save_every=2,
                       train__batch_size=1, train__grad_accum=1)
    conf = yaml.safe_load(cfg.read_text())
    conf["data"]["max_length"] = 256
    cfg.write_text(yaml.safe_dump(conf))
    r = cli("train", str(cfg))
    run = only_run(tmp_path)
    completed(r, run)
    before = sorted(p.name for p in rundir.checkpoints(run))
    # What a user might try next: far longer rows in bigger batches. The fused loss keeps
    # the logits small, so it is the activations: 16 rows x 131072 tokens, about 300 GiB by
    # `tunewiz train --dry-run` (twice any GPU's memory; `train` itself does not refuse it).
    conf = yaml.safe_load((run / "config.yaml").read_text())
    conf["train"].update(max_steps=6, batch_size=16, gradient_checkpointing=False, auto_batch=False)
    conf["data"].update(max_length=131072)
    (run / "config.yaml").write_text(yaml.safe_dump(conf))
    r = cli("train", str(run), "--resume")
    assert r.returncode == 1 and "out of GPU memory" in r.stderr and "batch_size" in r.stderr, r.stderr[-2000:]
    err = next(e for e in read_events(run / "events.jsonl")[::-1] if e["type"] == "error")
    assert err["kind"] == "oom" and "--resume" in err["hint"]
    assert sorted(p.name for p in rundir.checkpoints(run)) == before
    conf["train"].update(batch_size=1)
    conf["data"].update(max_length=256)
    (run / "config.yaml").write_text(yaml.safe_dump(conf))
    r = cli("train", str(run), "--resume")
    completed(r, run)
    assert max(e["step"] for e in read_events(run / "events.jsonl") if e["type"] == "step") == 6


@two_gpus
@pytest.mark.parametrize("stage,method", [("zero1", "lora"), ("zero2", "lora"), ("zero3", "lora"), ("zero2", "full"),
                                          ("zero3", "full"),
                                          ("zero2_offload", "lora"), ("zero3_offload", "full")])
def test_deepspeed_on_two_gpus(tiny_model, tmp_path, cli, stage, method):
    lr = 1e-3 if method == "full" else 1e-2
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl", n=32), method=method,
                       train__max_steps=6, train__save_every=3, train__lr=lr, train__grad_accum=1,
                       layout={"gpus": 2, "deepspeed": stage, "master_port": 29600 + hash(stage + method) % 300})
    r = cli("train", str(cfg))
    run = next(r_ for r_ in rundir.list_runs(tmp_path / "runs"))
    start = completed(r, run)
    assert start["world_size"] == 2
    assert start["attention"] == "varlen"
    assert start["loss"] == "model"  # ZeRO-3 gathers the output layer only in its own forward
    assert {"rank0.log", "rank1.log"} <= {p.name for p in (run / "logs").iterdir()}
    ckpt = rundir.checkpoints(run)[-1]
    zero = json.loads((ckpt / "zero.json").read_text())
    assert zero["stage"] == int(stage[4])
    evals = [e for e in read_events(run / "events.jsonl") if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [0, 3, 6]  # generation works with sharded weights too
    resume_for_more_steps(cli, run, 8)  # DeepSpeed's own checkpoint loads back on every rank
    out = run / ("adapter" if method == "lora" else "hf")
    r = cli("convert", str(run), str(out))
    assert r.returncode == 0, r.stderr
    if method == "lora":
        r = cli("merge", str(tiny_model), str(out), str(run / "merged"))
        assert r.returncode == 0, r.stderr
        merged_logits_match(tiny_model, run / "merged", out)
        r = cli("chat", str(run / "merged"), "--prompt", "Who are you?", "--max-new-tokens", "8")
    else:
        r = cli("chat", str(out), "--prompt", "Who are you?", "--max-new-tokens", "8")
    assert r.returncode == 0, r.stderr


@needs_deepspeed
@pytest.mark.parametrize("stage,method", [("zero2", "lora"), ("zero3", "full")])
def test_deepspeed_checkpoints_on_one_gpu_are_whole_and_resume(tiny_model, tmp_path, cli, stage, method):
    """DeepSpeed writes its own checkpoint layout (one folder per tag, sharded states): it
    goes through the same step-N.tmp -> step-N rename and marker as tunewiz's own, so a
    rotation keeps only whole checkpoints and --resume loads DeepSpeed's states back."""
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl", n=32), method=method,
                       train__max_steps=6, train__save_every=2, train__save_total_limit=2,
                       train__lr=1e-3, train__grad_accum=1,
                       layout={"gpus": 1, "deepspeed": stage, "master_port": 29550 + (stage == "zero3")})
    r = cli("train", str(cfg))
    run = next(r_ for r_ in rundir.list_runs(tmp_path / "runs"))
    completed(r, run)
    ckpts = rundir.checkpoints(run)
    assert [c.name for c in ckpts] == ["step-4", "step-6"]          # rotated: step-2 is gone
    assert not [p for p in (run / "checkpoints").iterdir() if rundir.is_stale(p.name)]
    assert json.loads((ckpts[-1] / "zero.json").read_text())["stage"] == int(stage[4])
    resume_for_more_steps(cli, run, 8)


@two_gpus
def test_two_gpus_match_one_at_the_same_global_batch(tiny_model, tmp_path, cli):
    data = write_data(tmp_path / "d.jsonl", n=32)
    curves = {}
    for n, accum in ((1, 4), (2, 2)):
        d = tmp_path / f"g{n}"
        d.mkdir()
        cfg = write_config(d, tiny_model, data, train__max_steps=8, train__grad_accum=accum, train__dtype="fp32",
                           lora={"r": 8, "alpha": 16, "dropout": 0.0},
                           layout={"gpus": n, "deepspeed": "none", "master_port": 29950})
        r = cli("train", str(cfg))
        run = only_run(d)
        completed(r, run)
        curves[n] = losses(run)
    assert curves[2] == pytest.approx(curves[1], rel=1e-3)


def test_fused_loss_matches_the_models_own_under_bf16_on_gpu(tiny_model):
    import torch

    from test_fused_loss import load, loss_and_grads, packed_batch

    tok, model = load(tiny_model, "lora")
    model.cuda()
    batch, n_items = packed_batch(tok, rows=4, width=200)
    batch = {k: v.cuda() for k, v in batch.items()}
    ref_loss, ref_grads = loss_and_grads(model, batch, n_items, fused=False, autocast=True, device="cuda")
    loss, grads = loss_and_grads(model, batch, n_items, fused=True, autocast=True, device="cuda")
    torch.testing.assert_close(loss, ref_loss, rtol=2e-3, atol=1e-3)
    for name in ref_grads:
        cos = torch.nn.functional.cosine_similarity(grads[name].flatten(), ref_grads[name].flatten(), dim=0)
        assert cos > 0.999, (name, float(cos))


def test_fp32_inputs_under_autocast_take_the_flash_kernel():
    """QLoRA's residual stream is fp32 (peft upcasts the norms): under bf16 autocast its
    attention must still run the flash kernel, not the per-sample reference path."""
    from tunewiz.engine import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, heads, 64, 32, device="cuda") for heads in (4, 2, 2))
    pos = torch.tensor([list(range(40)) + list(range(24)), list(range(64))])
    lengths = {key: value.cuda() if hasattr(value, "cuda") else value
               for key, value in attention.sample_lengths(pos).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, _ = attention.varlen_attention_forward(None, q, k, v, None, scaling=32 ** -0.5, **lengths)
    assert out.dtype == torch.bfloat16  # the flash path; the reference path would keep fp32
    ref = attention._reference_varlen(*(t.transpose(1, 2).reshape(128, t.shape[1], 32) for t in (q, k, v)),
                                      lengths["tw_cu_seqlens"], 64, 32 ** -0.5)
    torch.testing.assert_close(out.float().reshape(128, 4, 32), ref, rtol=2e-2, atol=2e-2)


def test_whole_rows_take_sdpa_and_match_the_varlen_kernel():
    """Rows that are each one sample go to SDPA's causal kernel: the same attention as the
    varlen flash kernel gives them, in bf16, with grouped key/value heads."""
    from types import SimpleNamespace

    from tunewiz.engine import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, heads, 256, 64, device="cuda", dtype=torch.bfloat16) for heads in (8, 2, 2))
    lengths = {key: value.cuda() if hasattr(value, "cuda") else value
               for key, value in attention.sample_lengths(torch.arange(256).repeat(2, 1)).items()}
    assert lengths[attention.WHOLE_ROWS_KEY] is True
    module = SimpleNamespace(num_key_value_groups=4, is_causal=True)
    out, _ = attention.varlen_attention_forward(module, q, k, v, None, scaling=0.125, **lengths)
    ref, _ = attention.varlen_attention_forward(module, q, k, v, None, scaling=0.125,
                                                **{**lengths, attention.WHOLE_ROWS_KEY: False})
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
