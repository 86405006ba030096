"""Where one training micro-step's time goes: forward, loss, backward, optimizer, per
attention backend, on the engine's own model loading, LoRA wrapping and autocast.

    python bench/bench_step.py --model internlm2-1.8b-shape --profile prof.txt

Cases (each on the same 2,048-token rows, batch --batch-size):
- `unpacked-causal`: one sample per row (the setting of DESIGN.md's baseline table);
- `packed-sdpa`: packed short conversations, transformers' block-diagonal masks;
- `packed-varlen`: the same rows through tunewiz's varlen backend.
Times are medians over --iters micro-steps after --warmup, the GPU synchronized at each
phase boundary. `--profile` writes
the top CUDA kernels of the varlen case (torch.profiler) to a file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import prepare_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="internlm2-1.8b-shape")
    p.add_argument("--method", choices=("lora", "full"), default="lora")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--lora-dropout", type=float, default=0.1)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--cases", default="unpacked-causal,packed-sdpa,packed-varlen")
    p.add_argument("--profile", metavar="OUT", help="write the varlen case's top CUDA kernels here")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu only checks the script runs")
    p.add_argument("--input-casts", action=argparse.BooleanOptionalAction, default=False,
                   help="keep peft's cast of every adapter input to fp32 (what tunewiz skips under autocast)")
    p.add_argument("--compile", action="store_true", help="compile each decoder layer (train.compile)")
    p.add_argument("--fused-loss", action="store_true",
                   help="the loss from the last hidden states (train.fused_loss): its time shows under fwd")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="recompute activations (on by default, as in tunewiz's config)")
    args = p.parse_args(argv)

    import time

    import torch

    from tunewiz.engine import attention, fused_loss, step_speed
    from tunewiz.engine.contract.config import config_from_dict
    from tunewiz.engine.demo import write_sample_datasets
    from tunewiz.engine.models import load_model, load_tokenizer, wrap_for_method
    from tunewiz.engine.dataset import build_dataset
    from tunewiz.engine.packing import collate

    work = Path(tempfile.mkdtemp(prefix="tunewiz-step-"))
    dev = args.device
    cuda = dev == "cuda"
    path = prepare_model(args.model, work, dev)
    data = write_sample_datasets(work / "data", "Ada")["conversation"]
    tok = load_tokenizer(path)
    print(f"{args.model}, {args.method}, batch {args.batch_size} x {args.max_length} tokens, "
          f"LoRA dropout {args.lora_dropout}, adapter input casts {'on' if args.input_casts else 'off'}, "
          f"compile {'on' if args.compile else 'off'}, fused loss {'on' if args.fused_loss else 'off'}, grad ckpt {'on' if args.gradient_checkpointing else 'off'}, "
          f"torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if cuda else 'cpu'}")
    print(f"{'case':18s} {'fwd ms':>8s} {'loss ms':>8s} {'bwd ms':>8s} {'opt ms':>7s} {'total ms':>9s} "
          f"{'tokens/s':>9s} {'peak GiB':>9s}")
    for case in args.cases.split(","):
        attn = "varlen" if case.endswith("varlen") else "sdpa"
        cfg = config_from_dict({
            "model": {"path": str(path)}, "method": args.method,
            "lora": {"r": 64, "alpha": 16, "dropout": args.lora_dropout},
            "data": {"files": [str(data)], "max_length": args.max_length, "pack": case.startswith("packed")},
            "train": {"attention": attn, "batch_size": args.batch_size,
                      "gradient_checkpointing": args.gradient_checkpointing, "auto_batch": False},
        })
        if case.startswith("packed"):
            seqs, _ = build_dataset(cfg.data, "sft", tok)
            rows = [s for s in seqs if len(s["input_ids"]) == max(len(x["input_ids"]) for x in seqs)]
        else:  # one long sample per row: ids cycled from the packed stream, plain positions
            seqs, _ = build_dataset(cfg.data, "sft", tok)
            ids = [i for s in seqs for i in s["input_ids"]][:args.max_length]
            rows = [{"input_ids": ids, "labels": ids, "position_ids": list(range(len(ids)))}]
        batch = collate((rows * args.batch_size)[:args.batch_size], tok.pad_token_id)
        extra = attention.sample_lengths(batch["position_ids"]) if attn == "varlen" else {}
        if args.fused_loss:  # as the recipe does: trained positions found on the CPU
            extra.update(fused_loss.trained_rows(batch["labels"]))
        batch = {k: v.to(dev) for k, v in batch.items()}
        extra = {k: v.to(dev) if hasattr(v, "to") else v for k, v in extra.items()}
        n_tokens = batch["input_ids"].numel()
        n_trained = int((batch["labels"][:, 1:] != -100).sum())

        dtype = torch.bfloat16 if cuda else torch.float32
        model = wrap_for_method(load_model(cfg, path, dev, dtype), cfg)
        if not args.input_casts and cuda and args.method == "lora":
            step_speed.skip_adapter_input_casts(model)
        if args.compile:
            step_speed.compile_layers(model)
        model.train()
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5, fused=cuda)
        autocast = torch.autocast(dev, dtype=torch.bfloat16, enabled=cuda and args.method != "full")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = {k: [] for k in ("fwd", "loss", "bwd", "opt")}

        def mark() -> float:
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() * 1e3

        def step(record: bool):
            t = [mark()]
            with autocast:
                if args.fused_loss:
                    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "labels")}  # rows in extra
                    loss = fused_loss.shifted_loss(model, {**inputs, **extra}, n_trained)
                    t.append(mark())
                else:
                    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], **extra)
                    t.append(mark())
                    loss = model.loss_function(out.logits, batch["labels"], vocab_size=out.logits.shape[-1])
            t.append(mark())
            loss.backward()
            t.append(mark())
            opt.step()
            opt.zero_grad(set_to_none=True)
            t.append(mark())
            if record:
                for k, a, b in zip(times, t, t[1:]):
                    times[k].append(b - a)

        for i in range(args.warmup + args.iters):
            step(i >= args.warmup)
        med = {k: statistics.median(v) for k, v in times.items()}
        total = sum(med.values())
        print(f"{case:18s} {med['fwd']:8.1f} {med['loss']:8.1f} {med['bwd']:8.1f} {med['opt']:7.1f} {total:9.1f} "
              f"{n_tokens / total * 1e3:9.0f} {torch.cuda.max_memory_allocated() / 2**30 if cuda else 0:9.2f}",
              flush=True)
        if args.profile and attn == "varlen" and cuda:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                step(False)
                step(False)
            Path(args.profile).write_text(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40))
        model = opt = None  # free before the next case loads
        if cuda:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
