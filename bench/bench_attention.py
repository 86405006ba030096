"""Which attention kernel a training step should use on this GPU, before tunewiz picks one.

Rows that each hold one whole sample go to SDPA's causal attention (engine/attention.py);
SDPA has several kernels behind it (flash, cuDNN, memory-efficient) and picks by its own
priority order, not by speed on this GPU. This times each of them, forward and backward,
on a model shape's attention (grouped-query heads, bf16, causal), next to tunewiz's varlen
kernel on the same rows, and checks each one's output and gradients against flash's:

    python bench/bench_attention.py --model internlm2-1.8b-shape --batch-size 16 --seq 2048

It prints milliseconds per call and per step (one call per decoder layer), and the largest
difference from flash. A kernel that cannot take the shape is reported as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import SHAPES  # noqa: E402

# "default" is SDPA with no kernel forced: what transformers' sdpa attention (and so the
# whole-rows path) gets. "varlen" is engine/attention.py's kernel for packed rows.
KERNELS = ("default", "flash", "cudnn", "efficient", "varlen")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="internlm2-1.8b-shape", choices=sorted(SHAPES))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--kernels", default=",".join(KERNELS))
    p.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = p.parse_args(argv)

    import warnings

    import torch

    # A kernel that cannot take the shape says why in several warnings; the table says it once.
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*(kernel not used|runtime disabled|fused kernels).*")
    if not torch.cuda.is_available():
        print("bench_attention needs a CUDA GPU", file=sys.stderr)
        return 1
    dims = SHAPES[args.model]
    heads, kv_heads = dims["num_attention_heads"], dims["num_key_value_heads"]
    head_dim = dims["hidden_size"] // heads
    layers = dims["num_hidden_layers"]
    torch.manual_seed(0)
    b, s = args.batch_size, args.seq
    q = torch.randn(b, heads, s, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(b, kv_heads, s, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(b, kv_heads, s, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad_out = torch.randn(b, heads, s, head_dim, device="cuda", dtype=torch.bfloat16)

    results, reference = [], None
    for name in args.kernels.split(","):
        run = _kernel(name, torch)
        try:
            out, grads = _once(run, q, k, v, grad_out)
        except RuntimeError as e:
            results.append({"kernel": name, "error": str(e).splitlines()[0][:160]})
            print(f"{name:>10}: cannot run this shape ({results[-1]['error']})")
            continue
        if reference is None:
            reference = (out, grads)
        diff = max([(out - reference[0]).abs().max().item()]
                   + [(g - r).abs().max().item() for g, r in zip(grads, reference[1])])
        ms = _time(run, q, k, v, grad_out, args.iters, torch)
        results.append({"kernel": name, "ms_per_call": round(ms, 3), "ms_per_step": round(ms * layers, 2),
                        "max_diff_vs_first": diff})
        print(f"{name:>10}: {ms:7.3f} ms fwd+bwd per call, {ms * layers:7.2f} ms per step "
              f"({layers} layers), max diff vs {results[0]['kernel']} {diff:.2e}")
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "batch_size": b, "seq": s,
                                        "gpu": torch.cuda.get_device_name(), "results": results}, indent=1))
    return 0


def _kernel(name: str, torch):
    """A function (q, k, v) -> output in (B, H, S, D) for each kernel."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if name == "varlen":
        from tunewiz.engine.attention import _flash_varlen

        def run(q, k, v):
            b, h, s, d = q.shape
            cu = torch.arange(0, (b + 1) * s, s, device=q.device, dtype=torch.int32)
            flat = [t.transpose(1, 2).reshape(b * s, t.shape[1], d) for t in (q, k, v)]
            return _flash_varlen(*flat, cu, s, None).reshape(b, s, h, d).transpose(1, 2)
        return run
    if name == "default":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
               "efficient": SDPBackend.EFFICIENT_ATTENTION}[name]

    def run(q, k, v):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    return run


def _once(run, q, k, v, grad_out):
    for t in (q, k, v):
        t.grad = None
    out = run(q, k, v)
    out.backward(grad_out)
    return out.detach().float(), [t.grad.detach().float() for t in (q, k, v)]


def _time(run, q, k, v, grad_out, iters: int, torch) -> float:
    for _ in range(3):
        run(q, k, v).backward(grad_out)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        run(q, k, v).backward(grad_out)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


if __name__ == "__main__":
    sys.exit(main())
