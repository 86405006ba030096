"""What FP8 matrix products would give full fine-tuning on this GPU, before tunewiz offers them.

Full fine-tuning runs its step almost entirely in bf16 matrix products (docs/bench.md), so
the one lever left is FP8 (torchao's float8 training, on Hopper and later). This measures it
on the same model, rows and optimizer, each variant in the same compiled form:

    python bench/bench_fp8.py --recipes bf16,tensorwise,rowwise --steps 10
    python bench/bench_fp8.py --recipes tensorwise --batch-size 16 --profile prof   # where the time goes

Variants: `bf16` (as tunewiz trains today), and torchao's recipes (`tensorwise`, `rowwise`,
`rowwise_with_gw_hp`) applied to every Linear but the LM head. It prints tokens/s, peak
GiB, the ratio to bf16, and the loss after the timed steps: every variant starts from the
same weights and sees the same batches, so a loss that moves away from bf16's is the
numerics changing, which is why FP8 would need a parity run of its own before it could be
a default. The FP8 recipes need a GPU of compute capability 8.9 or later and the torchao
package; `--device cpu` runs the bf16 variant alone (a check of the script itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import SHAPES  # noqa: E402

RECIPES = ("bf16", "tensorwise", "rowwise", "rowwise_with_gw_hp")


def build(shape: str, recipe: str, seed: int, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dims = dict(SHAPES[shape])
    dims["vocab_size"] = dims["vocab_size"] or 32000
    torch.manual_seed(seed)
    config = LlamaConfig(**dims, max_position_embeddings=4096, attn_implementation="sdpa")
    with torch.device(device):   # initialised where it trains: on a GPU, seconds, not a minute
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    if recipe != "bf16":
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training

        # The LM head's vocab-wide product is left in bf16, as torchao's own examples do.
        convert_to_float8_training(model, config=Float8LinearConfig.from_recipe_name(recipe),
                                   module_filter_fn=lambda module, fqn: fqn != "lm_head")
    for layer in model.model.layers:
        layer.compile()
    return model


def run(recipe: str, args) -> dict:
    import torch

    cuda = args.device == "cuda"
    model = build(args.shape, recipe, args.seed, args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=cuda)
    generator = torch.Generator(device=args.device).manual_seed(args.seed + 1)
    vocab = model.config.vocab_size
    batches = [torch.randint(0, vocab, (args.batch_size, args.max_length), device=args.device, generator=generator)
               for _ in range(args.warmup_steps + args.steps)]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses, start = [], None
    profiler = _profiler() if cuda and args.profile else None
    for i, ids in enumerate(batches):
        if profiler is not None and i == args.warmup_steps:
            profiler.__enter__()
        if profiler is not None and i == args.warmup_steps + 2:   # two profiled steps are enough
            profiler.__exit__(None, None, None)
            _write_profile(profiler, Path(f"{args.profile}.{recipe}.txt"))
            profiler = None
        if i == args.warmup_steps:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        # No KV cache: a cache object handed to every layer makes each compiled layer
        # recompile (the layer index is in its guards) until dynamo gives up and runs eager.
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = args.steps * args.batch_size * args.max_length
    result = {"recipe": recipe, "tokens_per_s": round(tokens / seconds), "s_per_step": round(seconds / args.steps, 4),
              "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
              "last_loss": round(float(losses[-1]), 4), "first_loss": round(float(losses[0]), 4)}
    del model, optimizer
    if cuda:
        torch.cuda.empty_cache()
    return result


def _profiler():
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CUDA])


def _write_profile(profiler, path: Path) -> None:
    """The kernels by GPU time over the profiled steps: where a step's time goes."""
    path.write_text(profiler.key_averages().table(sort_by="cuda_time_total", row_limit=45, max_name_column_width=90))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="internlm2-1.8b-shape", choices=sorted(SHAPES))
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: bf16 only, to check the script")
    p.add_argument("--recipes", default="bf16,tensorwise,rowwise", help=f"comma-separated: {', '.join(RECIPES)}")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps (one micro-batch each)")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (compilation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write the results here")
    p.add_argument("--profile", metavar="PREFIX", help="write each recipe's top GPU kernels over two timed "
                                                       "steps to PREFIX.RECIPE.txt (the timing then includes the profiler)")
    args = p.parse_args(argv)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"--recipes: unknown {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    try:
        import torch
    except ImportError:
        print("bench_fp8.py: needs torch", file=sys.stderr)
        return 1
    fp8 = [r for r in recipes if r != "bf16"]
    if args.device == "cpu" and fp8:
        print(f"bench_fp8.py: {', '.join(fp8)} need --device cuda (FP8 matrix products); --device cpu runs bf16 only",
              file=sys.stderr)
        return 1
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_fp8.py: no CUDA GPU here; --device cpu --recipes bf16 checks the script", file=sys.stderr)
        return 1
    if fp8 and torch.cuda.get_device_capability() < (8, 9):
        print("bench_fp8.py: FP8 needs a GPU of compute capability 8.9 or later", file=sys.stderr)
        return 1
    if fp8:
        try:
            import torchao.float8  # noqa: F401
        except ImportError as e:
            print(f"bench_fp8.py: the FP8 recipes need torchao ({e}); pip install torchao", file=sys.stderr)
            return 1
    results = []
    for recipe in recipes:
        results.append(run(recipe, args))
        print(json.dumps(results[-1]), flush=True)
    base = next((r for r in results if r["recipe"] == "bf16"), None)
    print(f"\n{'recipe':<20}{'tokens/s':>10}{'peak GiB':>10}{'x bf16':>8}{'last loss':>11}")
    for r in results:
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}" if base else "-"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        print(f"{r['recipe']:<20}{r['tokens_per_s']:>10,}{peak:>10}{ratio:>8}{r['last_loss']:>11.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": args.shape, "device": args.device, "batch_size": args.batch_size,
                                               "max_length": args.max_length, "steps": args.steps,
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
