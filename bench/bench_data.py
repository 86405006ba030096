"""Data at scale: tunewiz's tokenized cache against `datasets.map` of the same Encoder.

Writes realistic synthetic OpenAI-format sets (lognormal lengths, median about 276 tokens,
a quarter multi-turn) and measures, for each size, in one run on this machine:

- tunewiz, first run: `tunewiz prepare-data` on a cold cache (the same code path a
  training launch runs before the model loads): wall time and peak memory of the process
  tree;
- tunewiz, cached re-run: the same command again (what a re-launch or --resume pays);
- datasets: `load_dataset("json")` then `.map` with the same Encoder and the same number
  of processes, first run and re-run from its cache;
- two ranks (local rank 0 and 1, as torchrun starts them) preparing the same data on a
  cold cache, against one: the data phase's memory (the trees' peak minus what each rank
  held before its data phase, i.e. the interpreter, torch and the tokenizer).

Memory is PSS (proportional set size) summed over the process tree, sampled every 0.1 s:
forked workers share pages, and PSS counts a shared page once overall instead of once
per process as RSS does.

    python bench/bench_data.py                       # 10k, 50k, 200k, 1M samples
    python bench/bench_data.py --sizes 10000 50000   # a quick look

See docs/bench.md for figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

WORDS = ("the model learns from data that people write about science history music cooking travel code "
         "questions answers and many other topics in short and long sentences with numbers like 42 and 2026 "
         "explain describe compare list summarize translate why how what when where which").split()


def write_set(path: Path, n: int, seed: int = 0) -> None:
    """OpenAI-format records; total words per sample lognormal (median ~210 words, about 276
    tokens with a BPE tokenizer), a quarter of them 2-4 turns."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            total = max(8, int(rng.lognormal(np.log(210), 0.8)))
            turns = int(rng.integers(2, 5)) if rng.random() < 0.25 else 1
            messages = []
            for _t in range(turns):
                q = max(3, int(total / turns * 0.3))
                a = max(3, int(total / turns * 0.7))
                messages.append({"role": "user", "content": " ".join(rng.choice(words, q)) + "?"})
                messages.append({"role": "assistant", "content": " ".join(rng.choice(words, a)) + "."})
            f.write(json.dumps({"messages": messages}) + "\n")


def tree_pss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure(cmds: list[list[str]], env: dict) -> dict:
    """Run the commands at once; wall time of the slowest and peak PSS summed over their trees."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in cmds]
    handles = [psutil.Process(p.pid) for p in procs]
    peak = 0
    outputs: list[bytes] = [b""] * len(procs)

    def drain(i):
        outputs[i] = procs[i].stdout.read()

    readers = [threading.Thread(target=drain, args=(i,)) for i in range(len(procs))]
    for r in readers:
        r.start()
    while any(p.poll() is None for p in procs):
        peak = max(peak, sum(tree_pss(h) for h, p in zip(handles, procs) if p.poll() is None))
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    for r in readers:
        r.join()
    for p, out in zip(procs, outputs):
        if p.returncode != 0:
            sys.exit(f"bench: {' '.join(p.args[:6])} failed ({p.returncode}):\n{out.decode()[-3000:]}")
    return {"s": round(wall, 2), "peak_gb": round(peak / 1e9, 3), "peak_b": peak, "out": outputs[0].decode(),
            "outs": [o.decode() for o in outputs]}


# One rank's data phase, as a training rank runs it (tokenizer loaded first, then the data);
# it prints its own memory before the data phase, so the data's share can be told apart.
RANK = """
import sys, psutil
from tunewiz.engine.contract.config import load_config
from tunewiz.engine.models import load_tokenizer, resolve_model_path
from tunewiz.engine.token_cache import prepare
cfg = load_config(sys.argv[1])
tok = load_tokenizer(resolve_model_path(cfg.model.path))
print("baseline", psutil.Process().memory_full_info().pss, flush=True)
p = prepare(cfg.data, cfg.stage, tok, builder=sys.argv[2] == "0", log=print)
print(len(p.store), "sequences")
"""


def data_gb(run: dict) -> float:
    """Peak memory of the data phase: the trees' peak minus what the ranks held before it."""
    base = sum(int(line.split()[1]) for out in run["outs"] for line in out.splitlines()
               if line.startswith("baseline "))
    return round(run["peak_b"] / 1e9 - base / 1e9, 3)

HF_MAP = """
import sys, time
import datasets
from tunewiz.engine.contract.config import load_config
from tunewiz.engine.encode import Encoder
from tunewiz.engine.contract.formats import Sample
from tunewiz.engine.models import load_tokenizer, resolve_model_path
cfg = load_config(sys.argv[1]); cache = sys.argv[2]; num_proc = int(sys.argv[3])
tok = load_tokenizer(resolve_model_path(cfg.model.path))
enc = Encoder.from_config(tok, cfg.data, cfg.stage)

def encode(batch):
    out = enc.encode_many([Sample("", messages=m) for m in batch["messages"]])
    return {"input_ids": [e.input_ids for e in out], "labels": [e.labels for e in out]}

ds = datasets.load_dataset("json", data_files=cfg.data.files, split="train", cache_dir=cache)
# An explicit fingerprint: datasets cannot hash a tokenizer-holding closure the same way
# twice, and would otherwise never reuse its own cache on the re-run.
ds = ds.map(encode, batched=True, batch_size=256, num_proc=num_proc, remove_columns=ds.column_names,
            new_fingerprint="tunewiz-bench-encode-" + str(cfg.data.max_length))
print(len(ds), "samples")
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000, 1_000_000])
    p.add_argument("--model", default="demo", help="tokenizer to use (demo or a local HF folder)")
    p.add_argument("--num-proc", type=int, default=None, help="processes for both sides (default: cores)")
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--no-hf", action="store_true", help="skip the datasets.map peer")
    p.add_argument("--hf-up-to", type=int, default=None, metavar="N",
                   help="run the datasets.map peer only for sizes up to N samples (default: all)")
    p.add_argument("--ranks-up-to", type=int, default=None, metavar="N",
                   help="run the one-rank / two-rank comparison only for sizes up to N (default: all)")
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    from tunewiz.engine.parallel_encode import available_cores

    num_proc = args.num_proc or available_cores()
    work = Path(tempfile.mkdtemp(prefix="tunewiz-bench-data-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    tunewiz = [sys.executable, "-m", "tunewiz"]
    rows = []
    print(f"# {num_proc} processes, max_length {args.max_length}, tokenizer {args.model}; memory = peak PSS of "
          f"the process tree", flush=True)
    try:
        for n in args.sizes:
            data = work / f"set-{n}.jsonl"
            write_set(data, n)
            cfg = work / f"cfg-{n}.yaml"
            cfg.write_text(json.dumps({"name": "bench", "output_dir": str(work / "runs"),
                                       "model": {"path": args.model}, "method": "lora", "stage": "sft",
                                       "data": {"files": [str(data)], "format": "openai",
                                                "max_length": args.max_length, "num_proc": num_proc}}))
            row = {"samples": n, "file_mb": round(data.stat().st_size / 1e6, 1)}
            cache = work / f"cache-{n}"
            run_env = {**env, "TUNEWIZ_DATA_CACHE": str(cache)}
            first = measure([[*tunewiz, "prepare-data", str(cfg), "--json"]], run_env)
            summary = json.loads(first["out"].strip().splitlines()[-1])
            again = measure([[*tunewiz, "prepare-data", str(cfg), "--json"]], run_env)
            assert json.loads(again["out"].strip().splitlines()[-1])["cache_hit"]
            row.update(tokens=summary["tokens"], sequences=summary["sequences"],
                       tunewiz_first_s=first["s"], tunewiz_first_gb=first["peak_gb"],
                       tunewiz_cached_s=again["s"], tunewiz_cached_gb=again["peak_gb"])
            if args.ranks_up_to is None or n <= args.ranks_up_to:
                one = measure([[sys.executable, "-c", RANK, str(cfg), "0"]],
                              {**env, "TUNEWIZ_DATA_CACHE": str(work / "r1")})
                two = measure([[sys.executable, "-c", RANK, str(cfg), str(k)] for k in (0, 1)],
                              {**env, "TUNEWIZ_DATA_CACHE": str(work / "r2")})
                row.update(one_rank_gb=one["peak_gb"], two_ranks_gb=two["peak_gb"],
                           one_rank_data_gb=data_gb(one), two_ranks_data_gb=data_gb(two))
                shutil.rmtree(work / "r1", ignore_errors=True)
                shutil.rmtree(work / "r2", ignore_errors=True)
            if not args.no_hf and (args.hf_up_to is None or n <= args.hf_up_to):
                hf_cache = work / f"hf-{n}"
                hf = [sys.executable, "-c", HF_MAP, str(cfg), str(hf_cache), str(num_proc)]
                hf_first = measure([hf], env)
                hf_again = measure([hf], env)
                row.update(hf_first_s=hf_first["s"], hf_first_gb=hf_first["peak_gb"],
                           hf_cached_s=hf_again["s"], hf_cached_gb=hf_again["peak_gb"],
                           first_speedup=round(hf_first["s"] / first["s"], 2))
                shutil.rmtree(hf_cache, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| samples (tokens) | tunewiz first: s, GB | cached re-run: s, GB | data phase GB: 1 rank / 2 ranks | "
          "datasets.map first: s, GB | datasets re-run s | first-run speed vs datasets |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        hf = (f"{r['hf_first_s']} s, {r['hf_first_gb']} | {r['hf_cached_s']} | {r['first_speedup']}x"
              if "hf_first_s" in r else "- | - | -")
        print(f"| {r['samples']:,} ({r['tokens'] / 1e6:.1f}M) | {r['tunewiz_first_s']} s, {r['tunewiz_first_gb']} | "
              f"{r['tunewiz_cached_s']} s, {r['tunewiz_cached_gb']} | {r.get('one_rank_data_gb', '-')} / "
              f"{r.get('two_ranks_data_gb', '-')} | {hf} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
