"""The fused loss's chunk loop on its own: tunewiz's (engine/fused_loss.py) against ways of
doing its two non-matmul steps differently, and against Liger's fused linear cross-entropy.

On an H200, full fine-tuning's step spends 5-8% of its GPU time in the loss's softmax,
its casts and the fp32 sum of the output layer's gradient (docs/bench.md). This times one
forward + backward of the loss over --tokens rows of a --vocab x --hidden output layer:

    python bench/bench_fused_loss.py --tokens 32768 --trained-head     # full fine-tuning's case
    python bench/bench_fused_loss.py --tokens 8192                      # LoRA's: the head is frozen

Variants (each a replacement for one or both steps of engine/fused_loss.py's loop):
- `engine`: the loop as it is;
- `gemm-sum`: the output layer's gradient added by the matmul itself (addmm with an fp32
  result), not by a separate fp32 addition of each chunk's product;
- `compiled-softmax`: the softmax, the minus one at the target and the cast back in one
  compiled kernel (torch.compile, dynamic row count), the loss from the log-sum-exp;
- `both`: the two together;
- `liger`: Liger's LigerFusedLinearCrossEntropyFunction, the tuned peer's loss.
It prints ms per call, the peak memory above the inputs, and each variant's largest
difference from `engine` in the loss and the gradients. `--device cpu` checks the script
(the engine and compiled-softmax variants, small sizes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

VARIANTS = ("engine", "gemm-sum", "compiled-softmax", "both", "liger")
CPU_VARIANTS = {"engine", "compiled-softmax"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=32768, help="trained rows in the batch (16 x 2,048 by default)")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=92544)
    p.add_argument("--trained-head", action="store_true", help="the output layer trains (full fine-tuning)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--json", metavar="OUT", help="also write the figures here")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_fused_loss.py: no CUDA GPU here; --device cpu checks the script", file=sys.stderr)
        return 1
    if args.device == "cpu" and not set(variants) <= CPU_VARIANTS:
        print(f"bench_fused_loss.py: --device cpu runs --variants {','.join(sorted(CPU_VARIANTS))} only "
              "(the fp32-result matmul is CUDA's; Liger's kernels are Triton)", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    dev = args.device
    hidden = (torch.randn(args.tokens, args.hidden, device=dev) * 0.5).bfloat16().requires_grad_()
    weight = (torch.randn(args.vocab, args.hidden, device=dev) * 0.02).bfloat16().requires_grad_(args.trained_head)
    targets = torch.randint(0, args.vocab, (args.tokens,), device=dev)
    results, reference = [], None
    for name in variants:
        try:
            loss, grads, ms, peak = _measure(name, hidden, weight, targets, args.iters, torch)
        except Exception as e:   # a variant this torch cannot run is a finding, not a crash
            results.append({"variant": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            print(f"{name:>17}: cannot run here ({results[-1]['error']})")
            continue
        reference = reference or (loss, grads)
        diff = {"loss": abs(loss - reference[0]) / abs(reference[0])}
        for key, g in grads.items():
            ref = reference[1][key]
            diff[key] = ((g - ref).abs().max() / ref.abs().max()).item()
        results.append({"variant": name, "ms": round(ms, 2), "peak_gib": peak, "loss": loss,
                        "max_rel_diff_vs_engine": diff})
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in diff.items())
        peak_text = f"{peak:6.2f} GiB above inputs" if peak is not None else ""
        print(f"{name:>17}: {ms:8.2f} ms per forward + backward  {peak_text}  vs engine: {diffs}")
    if args.json:
        Path(args.json).write_text(json.dumps({"tokens": args.tokens, "hidden": args.hidden, "vocab": args.vocab,
                                               "trained_head": args.trained_head, "device": dev,
                                               "results": results}, indent=1))
    return 0


def _measure(name, hidden, weight, targets, iters, torch):
    run = _variant(name, torch)
    cuda = hidden.device.type == "cuda"

    def once():
        hidden.grad = weight.grad = None
        loss = run(hidden, weight, targets)
        loss.backward()
        return loss

    loss = once()   # also compiles, where the variant compiles
    grads = {"hidden": hidden.grad.float().clone()}
    if weight.requires_grad:
        grads["weight"] = weight.grad.float().clone()
    if not cuda:
        import time

        start = time.perf_counter()
        for _ in range(iters):
            once()
        return loss.item(), grads, (time.perf_counter() - start) * 1000 / iters, None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(iters):
        once()
    end.record()
    torch.cuda.synchronize()
    peak = round((torch.cuda.max_memory_allocated() - base) / 2**30, 2)
    return loss.item(), grads, begin.elapsed_time(end) / iters, peak


def _variant(name: str, torch):
    from tunewiz.engine import fused_loss

    if name == "liger":
        from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction

        def liger(hidden, weight, targets):
            out = LigerFusedLinearCrossEntropyFunction.apply(hidden, weight, targets, None, None, -100, 0.0, 0.0, "sum")
            return (out[0] if isinstance(out, tuple) else out) / targets.numel()
        return liger
    steps = {}
    if name in ("gemm-sum", "both"):
        steps["add_weight_gradient"] = _gemm_sum
    if name in ("compiled-softmax", "both"):
        steps["softmax_gradient"] = _compiled_softmax_gradient(torch)

    def engine(hidden, weight, targets):
        with _swapped(fused_loss, steps):
            return fused_loss.LinearCrossEntropy.apply(hidden, weight, targets, targets.numel(), torch.bfloat16)
    return engine


def _gemm_sum(grad_weight, grad, h) -> None:
    import torch

    torch.addmm(grad_weight, grad.T, h, out_dtype=torch.float32, out=grad_weight)


def _compiled_softmax_gradient(torch):
    @torch.compile(dynamic=True)
    def softmax_gradient(logits, y, dtype):
        z = logits.float()
        lse = torch.logsumexp(z, dim=-1, keepdim=True)
        loss = (lse - z.gather(1, y)).sum()
        grad = torch.exp(z - lse).scatter_add(1, y, torch.full(y.shape, -1.0, device=y.device))
        return loss, grad.to(dtype)
    return softmax_gradient


@contextlib.contextmanager
def _swapped(module, replacements: dict):
    """The engine's loop calls its two steps by module-level name: swap them for the call."""
    saved = {name: getattr(module, name) for name in replacements}
    for name, fn in replacements.items():
        setattr(module, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


if __name__ == "__main__":
    sys.exit(main())
