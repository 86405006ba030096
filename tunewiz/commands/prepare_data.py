"""`tunewiz prepare-data CONFIG`: tokenize and cache a config's data ahead of training.

The preprocess step LLaMA-Factory and Axolotl users know: run it on a CPU box (or while
the GPUs are busy) and `tunewiz train CONFIG` maps the finished cache instead of
tokenizing. It prints what training will see.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "prepare-data", help="tokenize and cache a config's data before training",
        description="Read, tokenize and pack the data of a config once and cache it on disk (where "
                    "data.cache_dir, else $TUNEWIZ_DATA_CACHE, else ~/.cache/tunewiz/data says); "
                    "`tunewiz train` on the same data, tokenizer and settings then starts from the cache. "
                    "Prints what training will see.")
    s.add_argument("config", help="config YAML (the one you will train)")
    s.add_argument("--num-proc", type=int, default=None, metavar="N",
                   help="tokenizing processes (default: data.num_proc, else one per core)")
    s.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return s


def run(args) -> int:
    from tunewiz.engine.contract.config import load_config
    from tunewiz.engine.contract.errors import ConfigError
    from tunewiz.engine.models import check_model, load_tokenizer, resolve_model_path
    from tunewiz.engine.contract.progress_meter import ProgressMeter
    from tunewiz.engine.token_cache import TokenizerSource, prepare

    if args.num_proc is not None and args.num_proc < 1:
        raise ConfigError(f"--num-proc: must be at least 1, got {args.num_proc}", "e.g. --num-proc 8")
    cfg = load_config(args.config)
    path = resolve_model_path(cfg.model.path)
    check_model(path, cfg.model.trust_remote_code)
    # loaded only if the data must be tokenized: a cache hit needs just the tokenizer's files
    tokenizer = TokenizerSource(folder=Path(path), load=lambda: load_tokenizer(path, cfg.model.trust_remote_code))
    say = (lambda msg: None) if args.json else print
    prepared = prepare(cfg.data, cfg.stage, tokenizer,
                       progress=ProgressMeter("tokenizing", "samples", show=not args.json).update,
                       log=say, num_proc=args.num_proc)
    summary = _summary(cfg, prepared)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    s = prepared.stats
    print()
    print("training will see:")
    print(f"  records    {s['records']:,}" + (f" ({s['filtered']:,} dropped: no output)" if s.get("filtered") else ""))
    print(f"  samples    {s['samples']:,}: {s['truncated']:,} cut at {cfg.data.max_length} tokens"
          + (f", {s['no_loss']:,} with nothing left to train on (skipped)" if s["no_loss"] else ""))
    share = s["trained_tokens"] / max(s["tokens"], 1)
    print(f"  tokens     {s['tokens']:,} ({s['trained_tokens']:,} trained, {share:.0%})")
    rows = "packed rows" if cfg.data.pack else "rows (one sample each)"
    print(f"  sequences  {s['sequences']:,} {rows} of up to {cfg.data.max_length} tokens, "
          f"{summary['fill']:.0%} full")
    steps = ", ".join(f"{n:,} on {w} process{'es' if w > 1 else ''}" for w, n in summary["steps_per_epoch"].items())
    print(f"  steps      {steps} per epoch (batch {cfg.train.batch_size} x accumulation {cfg.train.grad_accum})")
    print(f"  cache      {prepared.path} ({summary['cache_mib']:,.1f} MiB)")
    print(f"`tunewiz train {args.config}` starts from this cache.")
    return 0


def _summary(cfg, prepared) -> dict:
    from tunewiz.engine.batches import BatchPlan

    s = prepared.stats
    worlds = sorted({1, _processes(cfg)})
    steps = {w: BatchPlan(s["sequences"], cfg.train.batch_size, cfg.train.grad_accum, w, 0).steps_per_epoch
             for w in worlds}
    size = sum(f.stat().st_size for f in prepared.path.iterdir() if f.is_file())
    fill = s["tokens"] / max(s["sequences"] * cfg.data.max_length, 1)
    return {**s, "cache": str(prepared.path), "cache_hit": prepared.hit, "cache_mib": size / 2**20,
            "fill": fill, "steps_per_epoch": steps}


def _processes(cfg) -> int:
    """Processes the layout asks for, where the config says (gpus: N or a list); else 1."""
    gpus = cfg.layout.gpus
    per_node = len(gpus) if isinstance(gpus, list) else gpus if isinstance(gpus, int) else 1
    return max(1, per_node) * max(1, cfg.layout.nnodes)


