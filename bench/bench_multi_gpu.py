"""One GPU against N: the same tunewiz run on 1 GPU and on N GPUs at the same global batch.

For each case (method and layout; the InternLM2-1.8B shape with random weights, rows of
--max-length tokens of packed conversations, LoRA r 64 / alpha 16 / dropout 0 on every
linear layer, ``train.auto_batch: false`` so each side trains the batch it is given) the
real ``python -m tunewiz train CONFIG`` runs twice, each in a fresh process:

- on 1 GPU with grad accumulation N x --grad-accum,
- on N GPUs (--gpus) with grad accumulation --grad-accum,

so every optimizer step trains the same sequences on both sides (the step plan, not the
world size, decides which). Only the steps after --warmup-steps are timed, from the step
events' own timestamps; tokens/s is summed over the GPUs. The table gives both rates, their
ratio, issue 16's target, rank 0's peak memory, the largest loss difference between the two
curves (the same global batch gives the same curve, up to bf16 noise on a GPU) and whether
every step trained the same tokens on both sides. A second table gives, for each run,
which speed paths it says are on (attention backend, loss, compiled layers, auto_batch) and
the log lines that say why one is off: read from its start event and logs, never assumed.

The 1-GPU side keeps the case's layout (a ZeRO case runs the same ZeRO stage on one GPU,
started with the one-process rendezvous torchrun would give it), so both sides compute
the same thing; ``--one-gpu plain`` compares with the plain one-GPU run instead (what a
user had before adding a GPU: for full fine-tuning its pure-bf16 AdamW learns differently
from DeepSpeed's fp32 master weights, so its curve is not expected to match).

    python bench/bench_multi_gpu.py --model-dir models --out results/multi_gpu.json      # every case, 1 vs 2 GPUs
    python bench/bench_multi_gpu.py --cases ddp-lora,zero3-full --gpus 4 --out results/multi_gpu.json
    python bench/bench_multi_gpu.py --report results/multi_gpu.json
    python bench/bench_multi_gpu.py --device cpu --model tiny --gpus 2 --cases ddp-lora \\
        --max-length 64 --warmup-steps 1 --steps 2 --out /tmp/multi.json     # a check on CPU processes (gloo)

Results are merged into --out case by case: a call with --cases adds to or replaces those
cases and keeps the others, so the cases can be run in parts. No network is needed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import SHAPES, prepare_model  # noqa: E402

# name -> the case's method, layout, micro-batch, checkpointing, and issue 16's target
# (N-GPU tokens/s over 1-GPU tokens/s, for 2 GPUs).
CASES = {
    "ddp-lora": dict(method="lora", deepspeed="none", batch=4, ckpt=False, target=1.9),
    "qlora-ddp": dict(method="qlora", deepspeed="none", batch=8, ckpt=True, target=1.9),
    "zero2-full": dict(method="full", deepspeed="zero2", batch=4, ckpt=False, target=1.8),
    "zero3-full": dict(method="full", deepspeed="zero3", batch=4, ckpt=False, target=1.6),
    "zero3-lora": dict(method="lora", deepspeed="zero3", batch=4, ckpt=False, target=1.6),
}
# Log lines in which a run says how a speed path is set (engine/train.py writes them).
SAYS = {"compile": ("train.compile", "compiling "), "loss": ("train.fused_loss",), "auto_batch": ("train.auto_batch",)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    p.add_argument("--gpus", type=int, default=2, help="GPUs (CPU processes with --device cpu) of the N side")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--model", default="internlm2-1.8b-shape", help=f"{', '.join(SHAPES)} or a model folder")
    p.add_argument("--model-dir", help="keep the random-weight models here and reuse them on a later call "
                   "(default: a temporary folder, removed at the end)")
    p.add_argument("--grad-accum", type=int, default=2, help="accumulation of the N side (1 side: N x this)")
    p.add_argument("--batch-size", type=int, help="micro-batch of every case (default: each case's own)")
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per run")
    p.add_argument("--warmup-steps", type=int, default=3, help="steps before the timed ones (>= 1)")
    p.add_argument("--max-length", type=int, default=2048, help="tokens per packed row")
    p.add_argument("--one-gpu", choices=["same", "plain"], default="same",
                   help="the 1-GPU side's layout: the case's own (same) or no DeepSpeed (plain)")
    p.add_argument("--child-timeout", type=int, default=420, help="seconds before a run is given up")
    p.add_argument("--out", default="multi_gpu.json", help="JSON results (the runs' logs go beside it)")
    p.add_argument("--report", metavar="JSON", help="only print the tables of an earlier --out")
    args = p.parse_args(argv)
    if args.report:
        return args
    names = args.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r} (one of {', '.join(CASES)})")
    if args.device == "cpu":
        gpu_only = [n for n in names if CASES[n]["method"] == "qlora" or CASES[n]["deepspeed"] != "none"]
        if gpu_only:
            p.error(f"{gpu_only[0]} needs CUDA (QLoRA and DeepSpeed do): with --device cpu run ddp-lora")
    if args.gpus < 2:
        p.error("--gpus must be at least 2 (the N side)")
    if args.warmup_steps < 1 or args.steps < 1:
        p.error("--warmup-steps and --steps must be at least 1")
    args.names = names
    return args


# ----------------------------------------------------------------------------- data and configs

def write_conversations(path: Path, records: int, words: int) -> Path:
    """Varied single-turn conversations of about 4 x words tokens, packed several to a row."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(records):
            q = f"Question {i}: what do you know about topic {i % 113} and item {i % 37}?"
            a = " ".join(f"fact{(i * 7 + j) % 211} about lighthouse{j % 13}" for j in range(words))
            f.write(json.dumps({"conversation": [{"input": q, "output": a}]}) + "\n")
    return path


def data_for(args, work: Path) -> Path:
    """Enough conversations for every run's rows (a short set would only wrap into a second epoch)."""
    words = max(2, args.max_length // 32)             # a few samples per row
    rows = (args.warmup_steps + args.steps) * max(args.batch_size or c["batch"] for c in CASES.values()) \
        * args.gpus * args.grad_accum
    per_row = max(1, args.max_length // (4 * words + 24))
    return write_conversations(work / "conversations.jsonl", math.ceil(rows * per_row * 1.3) + 16, words)


def side_config(case: str, world: int, args, model: Path, data: Path, folder: Path, port: int) -> Path:
    from tunewiz.engine.contract.config import config_from_dict, dump_yaml

    spec = CASES[case]
    deepspeed = spec["deepspeed"] if world > 1 or args.one_gpu == "same" else "none"
    total = args.warmup_steps + args.steps
    accum = args.grad_accum * (args.gpus if world == 1 else 1)
    cfg = config_from_dict({
        "name": f"{case}-{world}", "output_dir": str(folder / "runs"), "model": {"path": str(model)},
        "method": spec["method"], "stage": "sft",
        "lora": {"r": 64, "alpha": 16, "dropout": 0.0, "target": "all-linear"},   # no draws: curves comparable
        "data": {"files": [str(data)], "max_length": args.max_length, "pack": True},
        "train": {"max_steps": total, "batch_size": args.batch_size or spec["batch"], "grad_accum": accum,
                  "gradient_checkpointing": spec["ckpt"], "auto_batch": False,
                  "lr": 2e-5 if spec["method"] == "full" else 2e-4, "save_every": total + 1},
        "eval": {"inputs": [], "every": 0},
        "layout": {"gpus": world, "deepspeed": deepspeed, "master_port": port}})
    config = folder / "config.yaml"
    config.write_text(dump_yaml(cfg), encoding="utf-8")
    return config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def side_env(args, world: int, deepspeed: bool, port: int, cache: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "TUNEWIZ_DATA_CACHE": str(cache)}
    for key in ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "ADDR", "PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE",
                "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)        # a layout of the caller's must not leak into either side
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        if world > 1:
            env["NPROC_PER_NODE"] = str(world)     # CPU processes (gloo): how many, as on a GPU-less node
    elif world == 1:
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    if world == 1 and deepspeed:
        # One process is not launched through torchrun, and DeepSpeed's own start-up looks
        # for a rendezvous (else for MPI): the one torchrun gives a world of one.
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
    return env


# ----------------------------------------------------------------------------- one run

def run_side(case: str, world: int, args, model: Path, data: Path, work: Path, logs: Path) -> dict:
    """One side's run, stopped once its last step is logged (its final checkpoint would only cost time)."""
    from tunewiz.engine.contract.events import read_events

    folder = work / f"{case}-{world}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    port = free_port()
    config = side_config(case, world, args, model, data, folder, port)
    deepspeed = CASES[case]["deepspeed"] != "none" and (world > 1 or args.one_gpu == "same")
    log = logs / f"{case}.{world}.log"
    total = args.warmup_steps + args.steps
    launched = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tunewiz", "train", str(config)], cwd=folder,
                                env=side_env(args, world, deepspeed, port, work / "cache"), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    events, run = None, None
    try:
        while time.time() < launched + args.child_timeout:
            run = next((r for r in sorted((folder / "runs").glob("*")) if (r / "events.jsonl").is_file()), None)
            got = read_events(run / "events.jsonl") if run else []
            if any(e["type"] == "step" and e["step"] >= total for e in got):
                events = got
                break
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    finally:
        stop(proc, run)
    rank_logs = "".join(f"\n=== {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                        for p in sorted((run / "logs").glob("rank*.log"))) if run else ""
    with open(log, "a") as out:
        out.write(rank_logs)
    if events is None:
        why = "timed out" if proc.returncode in (None, -signal.SIGKILL) else f"exit {proc.returncode}"
        return {"error": f"{why}: " + "".join(log.read_text(errors="replace").splitlines(True)[-20:]),
                "log": f"{log.parent.name}/{log.name}"}
    return {**measure(events, args.warmup_steps, args.steps), "world_size": world, "layout": "deepspeed" if deepspeed
            else ("ddp" if world > 1 else "one process"), "run_s": round(time.time() - launched, 1), "log": f"{log.parent.name}/{log.name}"}


def stop(proc: subprocess.Popen, run: Path | None) -> None:
    """End the run's processes: the `tunewiz train` session, and torchrun and its ranks,
    which run in sessions of their own (found by the run directory on their command line)."""
    pids = [pid for pid in _pids_with(str(run)) if pid != os.getpid()] if run else []
    for pid in pids:
        _kill(pid)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.time() + 60
    # Until they are gone: a GPU is free for the next run only once its processes are.
    while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.2)


def _pids_with(word: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--run-dir" in argv and any(word.encode() in a for a in argv):
            found.append(int(entry.name))
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def measure(events: list[dict], warmup: int, n: int) -> dict:
    """Rate over the timed steps (from the step events' timestamps), memory, losses, and the
    speed paths the run reports."""
    steps = [e for e in events if e["type"] == "step"]
    timed = steps[warmup:warmup + n]
    seconds = steps[warmup + n - 1]["t"] - steps[warmup - 1]["t"]
    return {"tokens_per_s": sum(e["tokens"] for e in timed) / seconds, "s_per_step": seconds / n,
            "peak_gib": max(e["mem_gib"] for e in steps), "losses": [e["loss"] for e in steps],
            "step_tokens": [e["tokens"] for e in steps], "step_trained_tokens": [e["trained_tokens"] for e in steps],
            "speed": speed_paths(events)}


def speed_paths(events: list[dict]) -> dict:
    """What the run itself says about each speed path: its start event and its log lines."""
    start = next(e for e in events if e["type"] == "start")
    train = start["config"]["train"]
    logs = [e["msg"] for e in events if e["type"] == "log"]
    said = {path: [m for m in logs if m.startswith(prefixes)] for path, prefixes in SAYS.items()}
    choice = start.get("auto_batch")
    if choice:
        auto = f"on: {choice['batch_size']} x {choice['grad_accum']}" + (", ckpt" if choice["gradient_checkpointing"] else "")
    else:
        auto = "off" + ("" if train["auto_batch"] else " (config: false)")
    compiled = start.get("compiled")
    return {"device": start.get("device"), "world_size": start.get("world_size"), "dtype": start.get("dtype"),
            "batch_size": train["batch_size"], "grad_accum": train["grad_accum"],
            "deepspeed": start["config"]["layout"]["deepspeed"],
            "attention": start.get("attention"), "loss": start.get("loss"),
            "compile": f"{train['compile']}: " + ("on" if compiled else "off" if compiled is not None else "?"),
            "auto_batch": auto, "why": [m for lines in said.values() for m in lines]}


# ----------------------------------------------------------------------------- the cases

def run_case(case: str, args, model: Path, data: Path, work: Path, logs: Path) -> dict:
    one = run_side(case, 1, args, model, data, work, logs)
    unit = "GPU" if args.device == "cuda" else "proc"
    print(f"  {case:11s} 1 {unit}  {_rate(one)}", flush=True)
    many = run_side(case, args.gpus, args, model, data, work, logs)
    print(f"  {case:11s} {args.gpus} {unit}s {_rate(many)}", flush=True)
    res = {"case": case, **{k: v for k, v in CASES[case].items()}, "gpus": args.gpus,
           "batch": args.batch_size or CASES[case]["batch"], "grad_accum": args.grad_accum,
           "global_batch": (args.batch_size or CASES[case]["batch"]) * args.grad_accum * args.gpus,
           "one_gpu_layout": args.one_gpu, "one": one, "many": many}
    if "tokens_per_s" in one and "tokens_per_s" in many:
        res["ratio"] = many["tokens_per_s"] / one["tokens_per_s"]
        res["max_loss_diff"] = max(abs(a - b) for a, b in zip(one["losses"], many["losses"]))
        res["same_batch"] = (one["step_tokens"] == many["step_tokens"]
                             and one["step_trained_tokens"] == many["step_trained_tokens"])
    return res


def _rate(side: dict) -> str:
    if "tokens_per_s" not in side:
        return "FAILED\n" + side["error"]
    return f"{side['tokens_per_s']:10.0f} tok/s  {side['peak_gib']:6.1f} GiB  ({side['run_s']:.0f}s)"


def report(doc: dict) -> None:
    n = doc.get("gpus", 2)
    unit = "GPU" if doc.get("device") == "cuda" else "proc"   # CPU processes (gloo) with --device cpu
    results = doc["results"]
    print()
    print(f"| case | 1-{unit} tok/s | {n}-{unit} tok/s | ratio | target | peak GiB/{unit} (1 / {n}) | max loss diff "
          "| same batch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        one, many = r["one"], r["many"]
        if "ratio" not in r:
            print(f"| {r['case']} | {_cell(one)} | {_cell(many)} | | {r['target']:.1f}x | | | |")
            continue
        print(f"| {r['case']} | {one['tokens_per_s']:,.0f} | {many['tokens_per_s']:,.0f} | {r['ratio']:.2f}x | "
              f"{r['target']:.1f}x | {one['peak_gib']:.1f} / {many['peak_gib']:.1f} | {r['max_loss_diff']:.2e} | "
              f"{'yes' if r['same_batch'] else 'NO'} |")
    print()
    print(f"| case | {unit}s | layout | attention | loss | compile | auto_batch |")
    print("|---|---|---|---|---|---|---|")
    notes = []
    for r in results:
        for side in (r["one"], r["many"]):
            if "speed" not in side:
                continue
            s = side["speed"]
            print(f"| {r['case']} | {side['world_size']} | {side['layout']} | {s['attention']} | {s['loss']} | "
                  f"{s['compile']} | {s['auto_batch']} |")
            notes += [f"{r['case']} on {side['world_size']}: {m}" for m in s["why"]]
    if notes:
        print("\nwhat the runs say about their speed paths:")
        for line in dict.fromkeys(notes):
            print(f"  {line}")


def _cell(side: dict) -> str:
    return f"{side['tokens_per_s']:,.0f}" if "tokens_per_s" in side else "failed"


def merged(out: Path, args, new: list[dict]) -> dict:
    """--out's earlier cases (of the same device and N) with this call's added or replaced."""
    old = json.loads(out.read_text()) if out.is_file() else {}
    keep = old.get("results", []) if (old.get("device"), old.get("gpus")) == (args.device, args.gpus) else []
    mine = {r["case"] for r in new}
    results = [r for r in keep if r["case"] not in mine] + new
    results.sort(key=lambda r: list(CASES).index(r["case"]))
    return {"device": args.device, "gpus": args.gpus, "model": args.model, "max_length": args.max_length,
            "warmup_steps": args.warmup_steps, "steps": args.steps, "results": results}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        report(json.loads(Path(args.report).read_text()))
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = out.parent / f"{out.stem}-logs"
    logs.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tunewiz-multi-gpu-"))
    t0 = time.time()
    new: list[dict] = []
    try:
        model = prepare_model(args.model, Path(args.model_dir).resolve() if args.model_dir else work, args.device)
        data = data_for(args, work)
        print(f"model and data ready in {time.time() - t0:.0f}s", flush=True)
        for case in args.names:
            new.append(run_case(case, args, model, data, work, logs))
            out.write_text(json.dumps(merged(out, args, new[-1:]), indent=1) + "\n")   # each case as it ends
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = json.loads(out.read_text()) if out.is_file() else merged(out, args, new)
    report(doc)
    print(f"\n{len(new)} case(s) in {time.time() - t0:.0f}s; results in {out}, logs in {logs}")
    return 0 if all("ratio" in r for r in new) else 1


if __name__ == "__main__":
    raise SystemExit(main())
