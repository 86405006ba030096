"""Calibrate the memory estimate: predicted against measured peak memory, one real run per configuration.

For each configuration (a model shape, method, micro-batch and gradient checkpointing;
rows of --max-length tokens, grad accumulation 1, LoRA r 64 / alpha 16 / dropout 0.1 on
every linear layer, the config's other defaults) the real ``python -m tunewiz train CONFIG``
runs --steps optimizer steps in its own process, eval and checkpoints off. The measured
peak is the largest ``mem_gib`` of its step events (on a GPU
``torch.cuda.max_memory_allocated``, on the CPU the peak resident memory); the predicted
one is ``engine.contract.memory_estimate`` for the same config and model folder. The
child is stopped once its last step is logged (its final checkpoint would only cost time).

Models are random-weight InternLM2 shapes written by bench_models.py into --model-dir
(kept there: a second call reuses them); the data is pretraining text long enough that
every row is one whole sample, as in bench_peers.py, whose figures docs/bench.md quotes.
Children run --parallel at a time on the one GPU when their predicted peaks fit it
together (each process's max_memory_allocated counts only its own allocations).

    python bench/bench_memory.py --model-dir models --out results/memory.json
    python bench/bench_memory.py --configs lora-b4,full-b2-ckpt --out results/memory.json
    python bench/bench_memory.py --dry                      # the predictions only, nothing runs
    python bench/bench_memory.py --report results/memory.json
    python bench/bench_memory.py --device cpu --shape tiny --configs lora-b4,full-b2-ckpt \\
        --max-length 64 --steps 2 --out /tmp/memory.json     # a quick check of the script itself

No network is needed: children run with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import SHAPES, prepare_model  # noqa: E402
from bench_peers import write_text_data  # noqa: E402

SHAPE_1_8B, SHAPE_7B = "internlm2-1.8b-shape", "internlm2-7b-shape"
# name -> (model shape, method, micro-batch, gradient checkpointing)
CONFIGS = {
    "lora-b4": (SHAPE_1_8B, "lora", 4, False),
    "lora-b8": (SHAPE_1_8B, "lora", 8, False),
    "lora-b4-ckpt": (SHAPE_1_8B, "lora", 4, True),
    "qlora-b8-ckpt": (SHAPE_1_8B, "qlora", 8, True),
    "qlora-b4": (SHAPE_1_8B, "qlora", 4, False),
    "full-b4": (SHAPE_1_8B, "full", 4, False),
    "full-b2-ckpt": (SHAPE_1_8B, "full", 2, True),
    "qlora7b-b1-ckpt": (SHAPE_7B, "qlora", 1, True),
}
# Memory the scheduler leaves unused when it runs children side by side (GiB), beyond
# each one's predicted need: an estimate on the low side must not make a neighbour OOM.
SIDE_BY_SIDE_MARGIN_GIB = 12


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated: {', '.join(CONFIGS)}")
    p.add_argument("--shape", choices=sorted(SHAPES) + ["demo"], help="run every configuration on this model "
                   "instead (tiny: a check of the script on the CPU; demo: the bundled SmolLM2-135M)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per run (the peak is reached by step 2)")
    p.add_argument("--max-length", type=int, default=2048, help="tokens per row")
    p.add_argument("--parallel", type=int, default=2, help="children at once on the GPU, when their peaks fit")
    p.add_argument("--child-timeout", type=int, default=240, help="seconds before a run is given up")
    p.add_argument("--model-dir", help="keep the random-weight models here and reuse them on a later call "
                   "(default: a temporary folder, removed at the end)")
    p.add_argument("--out", default="memory.json", help="JSON results (the children's logs go beside it)")
    p.add_argument("--dry", action="store_true", help="print the predictions only; nothing is built or run")
    p.add_argument("--report", metavar="JSON", help="only print the table of an earlier --out")
    args = p.parse_args(argv)
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"unknown configuration {unknown[0]!r} (one of {', '.join(CONFIGS)})")
    if args.device == "cpu" and any(CONFIGS[n][1] == "qlora" for n in names):
        p.error("QLoRA needs CUDA: leave the qlora configurations out with --device cpu")
    if args.steps < 2:
        p.error("--steps must be at least 2 (the optimizer states exist from step 1's update on)")
    args.names = names
    return args


def child_env(device: str, cache: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "TUNEWIZ_DATA_CACHE": str(cache)}
    if device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_config(name: str, args, model: Path, data: Path, work: Path) -> dict:
    """The config of one run, written into its own folder (the child is started by `start`)."""
    from tunewiz.engine.contract.config import config_from_dict, dump_yaml

    _, method, batch, ckpt = CONFIGS[name]
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cfg = config_from_dict({
        "name": "mem", "output_dir": str(folder / "runs"), "model": {"path": str(model)}, "method": method,
        "stage": "pretrain", "data": {"files": [str(data)], "format": "pretrain", "max_length": args.max_length},
        "lora": {"r": 64, "alpha": 16, "dropout": 0.1, "target": "all-linear"},
        # auto_batch off: the batch as named (the estimate is checked here, not the chooser)
        "train": {"max_steps": args.steps, "batch_size": batch, "grad_accum": 1, "gradient_checkpointing": ckpt,
                  "auto_batch": False, "lr": 2e-5 if method == "full" else 2e-4, "save_every": args.steps + 1},
        "eval": {"inputs": [], "every": 0}})
    config = folder / "config.yaml"
    config.write_text(dump_yaml(cfg), encoding="utf-8")
    return {"name": name, "config": config, "cfg": cfg, "folder": folder}


def predict(cfg, facts, device: str) -> dict:
    """engine.contract.memory_estimate for the run's config on one GPU (or the CPU)."""
    from tunewiz.engine.contract import memory_estimate as me

    devices = 1 if device == "cuda" else 0
    est = me.estimate(cfg, facts, devices)
    where = me.situation(cfg, facts, devices)
    return {"predicted_gib": round(est.peak_gib, 3), "needed_gib": round(est.needed_gib, 3),
            "parts": {k: round(v, 3) for k, v in est.parts.items()},
            "predicted_setup": f"compiled {where.compiled}, fused loss {where.fused_loss}"}


def folder_facts(model: Path):
    from tunewiz.engine.contract.model_facts import read_model_facts

    return read_model_facts(model)


def shape_facts(shape: str):
    """--dry: a shape's facts from its sizes alone (no model folder is written)."""
    from tunewiz.engine.contract.model_facts import ModelFacts, estimate_params

    sizes = {**SHAPES[shape], "model_type": "llama", "tie_word_embeddings": False}
    sizes["vocab_size"] = sizes["vocab_size"] or 2000      # tiny takes its tokenizer's
    return ModelFacts(shape, model_type="llama", params=estimate_params(sizes), hidden=sizes["hidden_size"],
                      layers=sizes["num_hidden_layers"], vocab=sizes["vocab_size"],
                      intermediate=sizes["intermediate_size"], config=sizes)


def start(job: dict, args, env: dict, logs: Path) -> None:
    log = open(logs / f"{job['name']}.log", "w")
    job["log"] = logs / f"{job['name']}.log"
    job["proc"] = subprocess.Popen([sys.executable, "-m", "tunewiz", "train", str(job["config"])], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, cwd=job["folder"])
    log.close()
    job["started"] = time.time()


def poll(job: dict, args) -> dict | None:
    """The run's result once its last step is logged or it has ended; None while it runs."""
    from tunewiz.engine.contract.events import read_events

    found = list((job["folder"] / "runs").glob("*/events.jsonl"))
    events = read_events(found[0]) if found else []
    steps = [e for e in events if e["type"] == "step"]
    done = any(e["step"] >= args.steps for e in steps)
    ended = job["proc"].poll() is not None
    late = time.time() - job["started"] > args.child_timeout
    if not (done or ended or late):
        return None
    job["proc"].kill()
    job["proc"].wait()
    if not done:
        why = "timed out" if late else f"exit {job['proc'].returncode}"
        tail = "".join(job["log"].read_text(errors="replace").splitlines(True)[-15:])
        return {"error": f"{why}: {tail}"}
    start_event = next((e for e in events if e["type"] == "start"), {})
    return {"measured_gib": round(max(e["mem_gib"] for e in steps), 3),
            "step_mem_gib": [e["mem_gib"] for e in steps],
            "run_s": round(time.time() - job["started"], 1),
            "measured_setup": f"{start_event.get('attention')} attention, {start_event.get('loss')} loss, "
                              f"{start_event.get('dtype')}",
            "log": [line for line in job["log"].read_text(errors="replace").splitlines()
                    if line.startswith(("compiling", "train.", "warning"))][:5]}


def gpu_memory_gib() -> float | None:
    from tunewiz.engine.contract.gpus import visible_gpus

    gpus = visible_gpus()
    return gpus[0].memory_total_gib if gpus else None


def run_all(jobs: list[dict], args, env: dict, logs: Path) -> list[dict]:
    """Every job, up to --parallel at a time while their predicted needs fit the GPU
    together; biggest first, so the small ones fill in beside them."""
    capacity = gpu_memory_gib() if args.device == "cuda" else None
    waiting = sorted(jobs, key=lambda j: -j["needed_gib"])
    running: list[dict] = []
    results = []
    while waiting or running:
        for job in list(waiting):
            busy = sum(j["needed_gib"] for j in running)
            side_by_side = args.device == "cuda" and capacity is not None and len(running) < args.parallel
            if not running or (side_by_side and busy + job["needed_gib"] + SIDE_BY_SIDE_MARGIN_GIB <= capacity):
                waiting.remove(job)
                start(job, args, env, logs)
                running.append(job)
                print(f"  started {job['name']} (predicted {job['predicted_gib']:.1f} GiB)", flush=True)
        for job in list(running):
            res = poll(job, args)
            if res is not None:
                running.remove(job)
                results.append(finish(job, res))
        time.sleep(0.5)
    return sorted(results, key=lambda r: args.names.index(r["config"]))


def finish(job: dict, res: dict) -> dict:
    out = {"config": job["name"], "shape": job["shape"], "method": job["cfg"].method,
           "batch": job["cfg"].train.batch_size, "seq": job["cfg"].data.max_length,
           "checkpointing": job["cfg"].train.gradient_checkpointing,
           **{k: job[k] for k in ("predicted_gib", "needed_gib", "parts", "predicted_setup")}, **res}
    if "measured_gib" in out:
        out["error_pct"] = round(100 * (out["predicted_gib"] / out["measured_gib"] - 1), 1)
        print(f"  {job['name']:16s} predicted {out['predicted_gib']:6.2f}  measured {out['measured_gib']:6.2f} GiB"
              f"  {out['error_pct']:+.1f}%  ({out['run_s']:.0f}s)", flush=True)
    else:
        print(f"  {job['name']:16s} FAILED\n{out['error']}", flush=True)
    return out


def report(results: list[dict]) -> None:
    print()
    print("| config | predicted GiB | measured GiB | error % |")
    print("|---|---|---|---|")
    for r in results:
        if "measured_gib" in r:
            print(f"| {r['config']} | {r['predicted_gib']:.1f} | {r['measured_gib']:.1f} | {r['error_pct']:+.1f} |")
        elif "error" in r:
            print(f"| {r['config']} | {r['predicted_gib']:.1f} | failed | |")
        else:
            print(f"| {r['config']} | {r['predicted_gib']:.1f} | not run | |")
    measured = [r for r in results if "error_pct" in r]
    if measured:
        worst = max(measured, key=lambda r: abs(r["error_pct"]))
        print(f"\nworst: {worst['config']} {worst['error_pct']:+.1f}%; within 15%: "
              f"{sum(abs(r['error_pct']) <= 15 for r in measured)} of {len(measured)}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        report(json.loads(Path(args.report).read_text())["results"])
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = out.parent / f"{out.stem}-logs"
    logs.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tunewiz-memory-"))
    model_dir = Path(args.model_dir) if args.model_dir else work
    t0 = time.time()
    try:
        jobs = []
        models: dict[str, Path] = {}
        most = max(CONFIGS[n][2] for n in args.names) * args.steps
        data = write_text_data(work / "text.jsonl", records=most + 8, words=args.max_length)
        for name in args.names:
            shape = args.shape or CONFIGS[name][0]
            if shape not in models:
                dry = args.dry and shape in SHAPES
                models[shape] = (model_dir / shape) if dry else prepare_model(shape, model_dir, args.device)
            job = run_config(name, args, models[shape], data, work)
            job["shape"] = shape
            facts = shape_facts(shape) if args.dry and shape in SHAPES else folder_facts(models[shape])
            job.update(predict(job["cfg"], facts, args.device))
            jobs.append(job)
        print(f"models and data ready in {time.time() - t0:.0f}s", flush=True)
        if args.dry:
            results = [{"config": j["name"], "shape": j["shape"], **{k: j[k] for k in ("predicted_gib", "needed_gib",
                        "parts", "predicted_setup")}} for j in jobs]
        else:
            results = run_all(jobs, args, child_env(args.device, work / "cache"), logs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.write_text(json.dumps({"device": args.device, "gpu_memory_gib": gpu_memory_gib() if args.device == "cuda" else None,
                               "steps": args.steps, "wall_s": round(time.time() - t0, 1), "results": results},
                              indent=1) + "\n")
    report(results)
    print(f"\n{len(results)} configurations in {time.time() - t0:.0f}s; results in {out}")
    return 0 if all("error" not in r for r in results) else 1



if __name__ == "__main__":
    raise SystemExit(main())
