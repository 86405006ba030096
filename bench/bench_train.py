"""Training throughput: `tunewiz train` against a plain HF Trainer + peft peer, in one run.

The peer here trains tunewiz's own packed rows, so it attends through SDPA with block
masks: about a third of the speed of the tuned peer (HF + Liger on full rows) that
bench_peers.py measures. Quote tunewiz's speed from bench_peers.py; this script checks
that both sides do the same work on the same tokens (equal step-1 losses).

Both sides train the same model for the same optimizer steps on the same token stream
(tunewiz's own tokenizing, packing and batch order; see hf_peer.py), each in a fresh
process, alternating A-B / B-A over the repeats so drift on a shared machine hits both.
Only steps after --warmup-steps count: setup, the first (allocator / lazy-init) steps and
the final checkpoint fall outside the window, and eval prompts are switched off.

    python bench/bench_train.py                      # demo model, LoRA, on the CPU
    python bench/bench_train.py --model internlm2-1.8b-shape --device cuda --max-length 2048 \
        --batch-size 1 --grad-accum 8 --gradient-checkpointing

See docs/bench.md for figures and how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script (make bench): its helper modules sit beside it

from bench_models import H100_PEAK_TFLOPS, SHAPES, gflop_per_token, prepare_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo",
                   help=f"demo, {', '.join(SHAPES)} (random weights), or a local HF model folder")
    p.add_argument("--method", choices=("lora", "qlora", "full"), default="lora")
    p.add_argument("--steps", type=int, default=5, help="measured optimizer steps per run")
    p.add_argument("--warmup-steps", type=int, default=1, help="optimizer steps run before measuring (>= 1)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--max-length", type=int, default=256, help="tokens per packed sequence")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    from tunewiz.engine.attention import CHOICES as ATTENTION_CHOICES

    p.add_argument("--attention", choices=ATTENTION_CHOICES, default="auto",
                   help="tunewiz's train.attention (auto: varlen on CUDA); the HF peer runs sdpa for auto/varlen")
    p.add_argument("--compile", action="store_true", help="tunewiz's train.compile (compiled layers)")
    p.add_argument("--fused-loss", action=argparse.BooleanOptionalAction, default=True,
                   help="tunewiz's train.fused_loss (the loss without full logits; on by default)")
    p.add_argument("--threads", type=int, help="CPU threads for both sides (default: torch's own choice)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each side, interleaved")
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    p.add_argument("--keep-logs", metavar="DIR", help="copy each child's output (per-step lines) into DIR")
    p.add_argument("--warmup-run", action=argparse.BooleanOptionalAction, default=None,
                   help="one untimed child before the timed ones (default: on for cuda, where the first "
                        "process on a fresh machine has always been the slow one)")
    args = p.parse_args(argv)
    if args.warmup_steps < 1:
        p.error("--warmup-steps must be at least 1: the first step has no start mark to time it from")
    if args.method == "qlora" and args.device != "cuda":
        p.error("--method qlora needs --device cuda (bitsandbytes 4-bit runs on GPUs only)")
    return args


def child_env(args) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # tunewiz trains on a GPU whenever it sees one
    else:
        # One GPU for both sides: on a multi-GPU machine tunewiz would start DDP and the
        # Trainer DataParallel, and the figures would not be one GPU's.
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    return env


def write_config(args, model_path: Path, data_file: Path, workdir: Path) -> Path:
    from tunewiz.engine.contract.config import config_from_dict, dump_yaml

    total = args.warmup_steps + args.steps
    cfg = config_from_dict({
        "name": "bench", "output_dir": str(workdir / "runs"), "model": {"path": str(model_path)},
        "method": args.method, "stage": "sft",
        "data": {"files": [str(data_file)], "max_length": args.max_length, "pack": True},
        "train": {"max_steps": total, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
                  "lr": 2e-5 if args.method == "full" else 2e-4,
                  "gradient_checkpointing": args.gradient_checkpointing, "auto_batch": False, "attention": args.attention,
                  "compile": args.compile, "fused_loss": args.fused_loss,
                  # No checkpoint inside the run: the one written after the last step is outside the window.
                  "save_every": total + 1},
        "eval": {"inputs": [], "every": 0},
    })
    path = workdir / "config.yaml"
    path.write_text(dump_yaml(cfg), encoding="utf-8")
    return path


def run_child(cmd: list[str], env: dict, log: Path) -> float:
    """Run one side to completion; returns its launch time (the clock both sides' marks use)."""
    launched = time.time()
    with open(log, "w") as out:
        code = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent).returncode
    if code != 0:
        sys.exit(f"bench: {' '.join(cmd[1:3])} failed (exit {code}); last lines of {log.name}:\n"
                 + "".join(log.read_text(errors="replace").splitlines(True)[-25:]))
    return launched


def run_tunewiz(config: Path, env: dict, workdir: Path, r: int) -> dict:
    from tunewiz.engine.contract.events import read_events

    runs = workdir / "runs"
    before = set(runs.glob("*")) if runs.exists() else set()
    launched = run_child([sys.executable, "-m", "tunewiz", "train", str(config)], env, workdir / f"tunewiz-{r}.log")
    (run,) = set(runs.glob("*")) - before
    events = read_events(run / "events.jsonl")
    steps = [e for e in events if e["type"] == "step"]
    start = next(e for e in events if e["type"] == "start")
    for e in events:  # e.g. memory pressure, which explains a slow run
        if e["type"] == "log" and e.get("level") == "warning":
            print(f"  tunewiz warning: {e['msg']}", flush=True)
    shutil.rmtree(run)  # its checkpoint can be large
    return {"launched": launched, "step_times": [e["t"] for e in steps], "losses": [e["loss"] for e in steps],
            "peak_gib": max(e["mem_gib"] for e in steps),
            "attention": start.get("attention", "?"), "loss": start.get("loss", "?")}


def run_hf(config: Path, env: dict, workdir: Path, r: int) -> dict:
    out = workdir / f"hf-{r}.json"
    launched = run_child([sys.executable, str(HERE / "hf_peer.py"), str(config), str(out)], env,
                         workdir / f"hf-{r}.log")
    return {"launched": launched, **json.loads(out.read_text())}


def window(res: dict, args, step_tokens: list[int]) -> dict:
    """Figures over the measured steps: marks are step ends, so step w's end starts the window."""
    w, n = args.warmup_steps, args.steps
    marks = res["step_times"]
    seconds = marks[w + n - 1] - marks[w - 1]
    return {"s_per_step": seconds / n, "tokens_per_s": sum(step_tokens[w:w + n]) / seconds,
            "peak_gib": res["peak_gib"], "to_first_step_s": marks[0] - res["launched"],
            "first_loss": res["losses"][0]}


def main(argv=None) -> int:
    args = parse_args(argv)
    env = child_env(args)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("bench: --device cuda but torch sees no GPU")
    workdir = Path(tempfile.mkdtemp(prefix="tunewiz-bench-"))
    try:
        from tunewiz.engine.demo import write_sample_datasets

        print(f"preparing {args.model} ...", flush=True)
        model_path = prepare_model(args.model, workdir, args.device)
        data = write_sample_datasets(workdir / "data", "Ada")["conversation"]
        config = write_config(args, model_path, data, workdir)
        figures: dict[str, list[dict]] = {"tunewiz": [], "hf": []}
        if args.warmup_run if args.warmup_run is not None else args.device == "cuda":
            t0 = time.time()
            run_tunewiz(config, env, workdir, -1)
            print(f"  warm-up run (not counted) done in {time.time() - t0:.0f}s", flush=True)
        raw = {}
        for r in range(args.repeats):
            order = ("tunewiz", "hf") if r % 2 == 0 else ("hf", "tunewiz")
            for side in order:
                t0 = time.time()
                raw[side] = (run_tunewiz if side == "tunewiz" else run_hf)(config, env, workdir, r)
                print(f"  repeat {r + 1}/{args.repeats} {side:8s} done in {time.time() - t0:.0f}s", flush=True)
            for side in order:  # the peer reports the plan's tokens per step, the same for both
                figures[side].append(window(raw[side], args, raw["hf"]["step_tokens"]))
        tw = raw["tunewiz"]
        setup = {"tunewiz": f"{tw['attention']} attention, {tw['loss']} loss",
                 "hf": f"{raw['hf']['attention']} attention, the model's own loss"}
        report(args, figures, raw["hf"]["threads"], raw["hf"]["device"], setup)
    finally:
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy(log, args.keep_logs)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(args, figures: dict, threads: int, device: str, setup: dict) -> None:
    med = {side: {k: statistics.median(f[k] for f in runs) for k in runs[0]} for side, runs in figures.items()}
    ratios = [a["s_per_step"] / b["s_per_step"] for a, b in zip(figures["tunewiz"], figures["hf"])]
    ratio = med["tunewiz"]["s_per_step"] / med["hf"]["s_per_step"]
    gflop = gflop_per_token(args.model, args.method)
    mfu = {s: (m["tokens_per_s"] * gflop / (H100_PEAK_TFLOPS * 1e3) if gflop and device == "cuda" else None)
           for s, m in med.items()}
    total = args.warmup_steps + args.steps
    print(f"\n{args.model}, {args.method}, batch {args.batch_size} x accum {args.grad_accum}, "
          f"max_length {args.max_length}, grad ckpt {'on' if args.gradient_checkpointing else 'off'}, "
          f"tunewiz compile {'on' if args.compile else 'off'}, "
          f"{device}" + (f" ({threads} thread{'s' if threads > 1 else ''})" if device == "cpu" else ""))
    print(f"tunewiz: {setup['tunewiz']}; HF: {setup['hf']}")
    print(f"steps {args.warmup_steps + 1}..{total} of {total} measured, median of {args.repeats} "
          f"interleaved repeats\n")
    print(f"{'':12s} {'s/step':>8s} {'tokens/s':>10s} {'peak GiB':>9s} {'to 1st step s':>14s} {'MFU':>6s}")
    for side, label in (("tunewiz", "tunewiz"), ("hf", "HF Trainer")):
        m = med[side]
        print(f"{label:12s} {m['s_per_step']:8.3f} {m['tokens_per_s']:10.1f} {m['peak_gib']:9.2f} "
              f"{m['to_first_step_s']:14.1f} {'%5.1f%%' % (100 * mfu[side]) if mfu[side] else '   n/a':>6s}")
    print(f"\ntunewiz/HF time per step: {ratio:.3f}  (per repeat: {' '.join(f'{x:.3f}' for x in ratios)})")
    la, lb = med["tunewiz"]["first_loss"], med["hf"]["first_loss"]
    # LoRA's B starts at zero, so step 1's loss is the base model's: equal losses mean equal work.
    print(f"step-1 loss: tunewiz {la:.4f}, HF {lb:.4f}"
          + ("" if abs(la - lb) <= 0.01 * max(abs(lb), 1e-6) else "  (DIFFERENT: the two sides saw different data)"))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "device": device, "threads": threads, "setup": setup,
            "median": med, "per_repeat": figures,
            "ratio_time": ratio, "ratio_per_repeat": ratios, "mfu": mfu,
            "gflop_per_token": gflop}, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
