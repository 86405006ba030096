"""GPU throughput: tunewiz's defaults against the tuned and the plain Hugging Face peer, in one call.

For each workload (method, micro-batch, checkpointing; one GPU, bf16, rows of --max-length
tokens, LoRA r 64 / alpha 16 / dropout 0.1 on every linear layer) the sides run one after
another, each in a fresh process:

- ``tunewiz``: the real ``python -m tunewiz train CONFIG`` with the config's defaults
  (only the workload's method, batch and checkpointing are set). Its data is pretraining
  text long enough that every row is one full sample, so it trains every position of full
  rows, as the peers do. ``tunewiz+KEY=VALUE[+...]`` sets train.KEY too
  (``tunewiz+compile=false``), ``SECTION.KEY=VALUE`` another section's key
  (``tunewiz+quant.double_quant=false``).
- ``liger``: HF Trainer + peft + ``use_liger_kernel=True`` on random full rows (peer_full_rows.py),
  the tuned peer a savvy user runs.
- ``hf``: the same without Liger.

Only steps after --warmup-steps count, timed by each side's own wall clock after a device
sync (tunewiz: its step events' timestamps). Ratios are against the best peer of the same
workload in the same call. For tunewiz the bench also checks the rate its step events
report against that wall clock (``reported/wall``, 1.00 when honest).

    python bench/bench_peers.py --out results/          # every workload, tunewiz vs liger vs hf
    python bench/bench_peers.py --workloads lora-b4 --sides tunewiz,tunewiz+compile=false,liger
    python bench/bench_peers.py --report results/results.jsonl    # the table again, from a file
    python bench/bench_peers.py --long-context --model-dir models --out results/long   # bench_long_context.py
    python bench/bench_peers.py --parity-steps 200 --model-dir models --out results/parity   # bench_parity.py

``qlora7b-b1-ckpt`` always runs on the InternLM2-7B shape (the others on --model);
``--workloads`` leaves it out by default, since writing that model alone takes a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import SHAPES, prepare_model  # noqa: E402

# name -> (method, micro-batch, gradient checkpointing)
WORKLOADS = {
    "lora-b4": ("lora", 4, False),
    "lora-b8": ("lora", 8, False),
    "qlora-b8-ckpt": ("qlora", 8, True),
    "full-b4": ("full", 4, False),
    "full-b8": ("full", 8, False),   # the tuned peer's other batch: ratios are against its best
    "full-b16": ("full", 16, False),  # where FP8's products outgrow bf16's at batch 8
    "qlora7b-b1-ckpt": ("qlora", 1, True),
}
# Workloads that fix their own model shape (whatever --model says).
WORKLOAD_MODEL = {"qlora7b-b1-ckpt": "internlm2-7b-shape"}
PEERS = ("liger", "hf")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help=f"{', '.join(SHAPES)} or a model folder (default: internlm2-1.8b-shape; "
                   "internlm2-7b-shape for --long-context)")
    p.add_argument("--workloads", default=",".join(w for w in WORKLOADS if w not in WORKLOAD_MODEL), help=f"comma-separated: {', '.join(WORKLOADS)}")
    p.add_argument("--sides", help="comma-separated, run in this order (default: tunewiz,liger,hf; "
                   "tunewiz for --long-context; tunewiz,liger for --parity-steps)")
    p.add_argument("--steps", type=int, default=8, help="measured optimizer steps per run")
    p.add_argument("--warmup-steps", type=int, default=3, help="steps before the measured ones (>= 1)")
    p.add_argument("--max-length", type=int, default=2048, help="tokens per row")
    p.add_argument("--child-timeout", type=int, default=300, help="seconds before a side is given up")
    p.add_argument("--model-dir", help="keep the random-weight models here and reuse them on a later call "
                   "(default: a temporary folder, removed at the end)")
    p.add_argument("--out", default=".", help="folder for results.jsonl and the sides' logs")
    p.add_argument("--report", metavar="RESULTS", help="only print the table of a results.jsonl")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    lc = p.add_argument_group("--long-context: the longest sequence that trains (bench_long_context.py)")
    lc.add_argument("--long-context", action="store_true", help="search for the longest trainable row instead")
    lc.add_argument("--lengths", default="8k,16k,32k,64k,96k,128k", help="lengths tried, shortest first (k = 1024; default %(default)s)")
    lc.add_argument("--granularity", default="4k", help="bisect between the last pass and the first failure to this")
    lc.add_argument("--budget-s", type=float, default=300, help="seconds of trials per side")
    lc.add_argument("--min-trial-s", type=float, default=30,
                    help="start no trial with less of the budget left (loading the model alone takes this)")
    lc.add_argument("--method", choices=("lora", "qlora", "full"),
                    help="method of --long-context (default qlora) and --parity-steps (default lora)")
    pa = p.add_argument_group("--parity-steps: tunewiz's loss curve against the tuned peer's (bench_parity.py)")
    pa.add_argument("--parity-steps", type=int, metavar="N", help="train N steps on both sides and compare the losses")
    pa.add_argument("--batch-size", type=int, default=4, help="micro-batch of the parity run")
    pa.add_argument("--window", type=int, default=20, help="steps in the trailing moving average compared")
    pa.add_argument("--parity-data", choices=("source", "conversations"), default="source",
                    help="source: the Python standard library's own source files as pretraining text, packed "
                         "(the loss stays well above zero); conversations: the 3,000 sample conversations "
                         "(a random model memorises them; default %(default)s)")
    args = p.parse_args(argv)
    if args.warmup_steps < 1:
        p.error("--warmup-steps must be at least 1")
    if args.long_context and args.parity_steps:
        p.error("--long-context and --parity-steps are separate runs: give one")
    if args.parity_steps is not None and args.parity_steps < 2:
        p.error("--parity-steps must be at least 2")
    return args


def child_env() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    return env


def write_text_data(path: Path, records: int, words: int) -> Path:
    """Pretraining records of random words, each far longer than a row: one sample per row."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(5000)]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(records):
            f.write(json.dumps({"text": " ".join(rng.choice(vocab) for _ in range(words))}) + "\n")
    return path


def tunewiz_sections(side: str) -> tuple[dict, dict]:
    """A side's settings: (train keys, {section: keys}). 'tunewiz+compile=false' sets
    train.compile; a dotted key sets another section's ('quant.double_quant=false')."""
    import yaml

    train: dict = {}
    sections: dict = {}
    for piece in side.split("+")[1:]:
        key, _, value = piece.partition("=")
        section, _, leaf = key.rpartition(".")
        (sections.setdefault(section, {}) if section else train)[leaf] = yaml.safe_load(value)
    return train, sections


def tunewiz_config(side: str, workload: str, args, model: Path, data: Path, runs: Path) -> dict:
    """The config a tunewiz side trains with: the workload's method, batch and checkpointing,
    the config's defaults for everything else, and what the side sets."""
    method, batch, ckpt = WORKLOADS[workload]
    total = args.warmup_steps + args.steps
    train_keys, sections = tunewiz_sections(side)
    train = {"max_steps": total, "batch_size": batch, "grad_accum": 1, "gradient_checkpointing": ckpt, "auto_batch": False,
             "lr": 2e-5 if method == "full" else 2e-4, "save_every": total + 1, **train_keys}
    return {"name": "bench", "output_dir": str(runs), "model": {"path": str(model)}, "method": method,
            "stage": "pretrain", "data": {"files": [str(data)], "format": "pretrain", "max_length": args.max_length},
            "train": train, "eval": {"inputs": [], "every": 0}, **sections}


def run_tunewiz(side: str, workload: str, args, model: Path, data: Path, work: Path) -> dict:
    from tunewiz.engine.contract.config import config_from_dict, dump_yaml

    total = args.warmup_steps + args.steps
    runs = work / "runs"
    cfg = config_from_dict(tunewiz_config(side, workload, args, model, data, runs))
    config = work / "config.yaml"
    config.write_text(dump_yaml(cfg), encoding="utf-8")
    shutil.rmtree(runs, ignore_errors=True)
    log = Path(args.out) / f"{workload}.{side.replace('=', '-')}.log"
    launched = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tunewiz", "train", str(config)], env=child_env(),
                                stdout=out, stderr=subprocess.STDOUT, cwd=work)
        events = _wait_for_step(proc, runs, total, launched + args.child_timeout)
    if events is None:
        return {"error": _tail(log)}
    steps = [e for e in events if e["type"] == "step"]
    start = next(e for e in events if e["type"] == "start")
    w, n = args.warmup_steps, args.steps
    measured = steps[w:w + n]
    seconds = steps[w + n - 1]["t"] - steps[w - 1]["t"]
    tokens = sum(e["tokens"] for e in measured)
    reported_s = sum(e["tokens"] / e["tokens_per_s"] for e in measured)   # the step times the events claim
    warnings = [e["msg"] for e in events if e["type"] == "log" and e.get("level") == "warning"]
    return {"tokens_per_s": tokens / seconds, "s_per_step": seconds / n,
            "peak_gib": max(e["mem_gib"] for e in steps), "first_loss": steps[0]["loss"],
            "losses": [e["loss"] for e in steps],
            "to_first_step_s": steps[0]["t"] - launched, "reported_over_wall": seconds / reported_s,
            "trained_share": sum(e["trained_tokens"] for e in measured) / tokens,
            "median_step_tokens_per_s": statistics.median(e["tokens_per_s"] for e in measured),
            "setup": f"{start.get('attention')} attention, {start.get('loss')} loss, "
                     f"compile {start['config']['train']['compile']}"
                     + (", FP8 products" if start.get("float8") else ""), "warnings": warnings}


def _wait_for_step(proc, runs: Path, last: int, deadline: float) -> list[dict] | None:
    """The run's events once its last step is logged; the process is then killed (its final
    checkpoint would only cost time). None when it failed or ran past the deadline."""
    from tunewiz.engine.contract.events import read_events

    try:
        while time.time() < deadline:
            found = list(runs.glob("*/events.jsonl"))
            events = read_events(found[0]) if found else []
            if any(e["type"] == "step" and e["step"] >= last for e in events):
                return events
            if proc.poll() is not None:
                return None
            time.sleep(0.5)
        return None
    finally:
        proc.kill()
        proc.wait()


def run_peer(side: str, workload: str, args, model: Path, work: Path) -> dict:
    method, batch, ckpt = WORKLOADS[workload]
    total = args.warmup_steps + args.steps
    out = work / f"{side}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "peer_full_rows.py"), str(model), str(out), "--method", method,
           "--batch-size", str(batch), "--max-length", str(args.max_length), "--steps", str(total)]
    cmd += ["--gradient-checkpointing"] * ckpt + ["--liger"] * (side == "liger")
    log = Path(args.out) / f"{workload}.{side}.log"
    launched = time.time()
    try:
        with open(log, "w") as f:
            code = subprocess.run(cmd, env=child_env(), stdout=f, stderr=subprocess.STDOUT, cwd=work,
                                  timeout=args.child_timeout).returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    if code != 0 or not out.exists():
        return {"error": _tail(log)}
    res = json.loads(out.read_text())
    w, n = args.warmup_steps, args.steps
    marks = res["step_times"]
    seconds = marks[w + n - 1] - marks[w - 1]
    steps = [tok / (b - a) for tok, a, b in zip(res["step_tokens"][w:w + n], marks[w - 1:], marks[w:w + n])]
    return {"tokens_per_s": sum(res["step_tokens"][w:w + n]) / seconds, "s_per_step": seconds / n,
            "median_step_tokens_per_s": statistics.median(steps),
            "peak_gib": res["peak_gib"], "first_loss": res["losses"][0] if res["losses"] else None,
            "losses": res["losses"],
            "to_first_step_s": marks[0] - launched, "setup": "use_liger_kernel" if side == "liger" else "plain"}


def _tail(log: Path, n: int = 15) -> str:
    return "".join(log.read_text(errors="replace").splitlines(True)[-n:])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        report([json.loads(line) for line in Path(args.report).read_text().splitlines() if line.strip()],
               args.markdown)
        return 0
    if args.long_context:
        import bench_long_context

        return bench_long_context.main(args)
    if args.parity_steps:
        import bench_parity

        return bench_parity.main(args)
    args.model = args.model or "internlm2-1.8b-shape"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.jsonl"
    workloads = args.workloads.split(",")
    sides = (args.sides or "tunewiz,liger,hf").split(",")
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"bench: unknown workload {w!r} (one of {', '.join(WORKLOADS)})")
    work = Path(tempfile.mkdtemp(prefix="tunewiz-peers-"))
    results = []
    try:
        t0 = time.time()
        models = {}
        for w in workloads:
            name = WORKLOAD_MODEL.get(w, args.model)
            if name not in models:
                models[name] = prepare_model(name, Path(args.model_dir) if args.model_dir else work, "cuda")
        most = max(WORKLOADS[w][1] for w in workloads) * (args.warmup_steps + args.steps)
        data = write_text_data(work / "text.jsonl", records=most + 8, words=args.max_length)
        print(f"model and data ready in {time.time() - t0:.0f}s", flush=True)
        for w in workloads:
            model = models[WORKLOAD_MODEL.get(w, args.model)]
            for side in sides:
                t0 = time.time()
                if side.startswith("tunewiz"):
                    res = run_tunewiz(side, w, args, model, data, work)
                elif side in PEERS:
                    res = run_peer(side, w, args, model, work)
                else:
                    sys.exit(f"bench: unknown side {side!r}")
                res = {"workload": w, "side": side, "run_s": round(time.time() - t0, 1), **res}
                results.append(res)
                with open(results_file, "a") as f:
                    f.write(json.dumps(res) + "\n")
                done = (f"{res['tokens_per_s']:9.0f} tok/s {res['peak_gib']:6.1f} GiB" if "tokens_per_s" in res
                        else "FAILED\n" + res["error"])
                print(f"{w:14s} {side:28s} {done}  ({res['run_s']:.0f}s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, args.markdown)
    return 0


def report(results: list[dict], markdown: bool = False) -> None:
    """Per workload: each side's tokens/s and peak memory, and its ratio to the best peer."""
    print()
    # tokens/s is over the whole timed window; a single stalled step shows as a median step
    # rate well above it.
    head = ("workload", "side", "tokens/s", "median step", "peak GiB", "x best peer", "reported/wall",
            "s to step 1")
    rows = []
    for w in dict.fromkeys(r["workload"] for r in results):
        mine = [r for r in results if r["workload"] == w]
        peers = [r for r in mine if r["side"] in PEERS and "tokens_per_s" in r]
        best = max(peers, key=lambda r: r["tokens_per_s"]) if peers else None
        for r in mine:
            if "tokens_per_s" not in r:
                rows.append((w, r["side"], "failed", "", "", "", "", ""))
                continue
            ratio = f"{r['tokens_per_s'] / best['tokens_per_s']:.2f} ({best['side']})" if best else ""
            honest = f"{r['reported_over_wall']:.3f}" if "reported_over_wall" in r else ""
            median = f"{r['median_step_tokens_per_s']:,.0f}" if "median_step_tokens_per_s" in r else ""
            rows.append((w, r["side"], f"{r['tokens_per_s']:,.0f}", median, f"{r['peak_gib']:.1f}", ratio, honest,
                         f"{r['to_first_step_s']:.0f}"))
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in (head, *rows):
        print("  ".join(str(x).rjust(wd) if i > 1 else str(x).ljust(wd) for i, (x, wd) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    raise SystemExit(main())
