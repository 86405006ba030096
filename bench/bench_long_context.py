"""The longest sequence one GPU trains: 7B QLoRA, batch 1, gradient checkpointing (``bench_peers.py --long-context``).

    python bench/bench_peers.py --long-context --model-dir models --out results/long
    python bench/bench_peers.py --long-context --lengths 64k,128k,192k --budget-s 540 --model-dir models
    python bench/bench_peers.py --long-context --sides tunewiz,liger --model-dir models

Each trial is a real ``python -m tunewiz train`` in a fresh process: the InternLM2-7B shape
(random bf16 weights, --model-dir as for the other workloads), the config's defaults with
only method, batch 1, gradient checkpointing and ``data.max_length`` set, for 2 optimizer
steps on rows of exactly that many tokens (pretraining records longer than the row,
truncated there, so every position trains and every row is full). The trial passes when
both steps are logged; it fails when the run's error event says ``oom`` (tunewiz reports
CUDA out-of-memory as that user error kind), on any other error, or when it runs past
--child-timeout. A trial cut short by the end of the budget counts as neither.

The search tries --lengths in order up to the first failure, then bisects between the
last length that trained and the first that did not, to --granularity, while --budget-s
lasts (per side; a trial is never started with less than --min-trial-s left). The model's
``max_position_embeddings`` is raised to the longest length tried, in a view of the model
folder (links to its files, a config.json of its own), so no row is longer than the model
says it can take.

``liger`` / ``hf`` run the same search for the HF peers (peer_full_rows.py on random rows
of the same length, QLoRA, checkpointing), where an ``OutOfMemoryError`` in their output is
the out-of-memory failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import SHAPES, prepare_model  # noqa: E402

DEFAULT_LENGTHS = "8k,16k,32k,64k,96k,128k"
STEPS = 2


def parse_length(text: str) -> int:
    """'96k' -> 98304, '4096' -> 4096 (k is 1024: sequence lengths are counted in powers of two)."""
    t = text.strip().lower()
    try:
        n = int(t[:-1]) * 1024 if t.endswith("k") else int(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a length (write 4096 or 4k)") from None
    if n < 1:
        raise ValueError(f"{text!r}: a length must be at least 1")
    return n


def short(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


# --------------------------------------------------------------------------- the search

def search(trial: Callable[[int, float], dict], lengths: list[int], granularity: int, budget_s: float,
           min_trial_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> dict:
    """The longest length ``trial`` passes. ``trial(length, seconds_left)`` returns a dict
    whose ``status`` is ``ok``, a failure (``oom``, ``timeout``, ``error``) or ``budget``
    (cut short by the budget: says nothing about the length, and ends the search).

    Lengths are tried in order until one fails, then the gap between the last pass and that
    failure is halved, on multiples of ``granularity`` above the pass, until it is no wider
    than ``granularity``. Memory grows with the length, so one failure bounds the answer."""
    deadline = clock() + budget_s
    trials: list[dict] = []
    good, bad, stopped = None, None, "done"

    def run(n: int) -> dict | None:
        nonlocal stopped
        left = deadline - clock()
        if left <= max(min_trial_s, 0.0):
            stopped = "budget"
            return None
        r = {"length": n, **trial(n, left)}
        trials.append(r)
        if r["status"] == "budget":
            stopped = "budget"
            return None
        return r

    for n in sorted(set(lengths)):
        r = run(n)
        if r is None:
            break
        if r["status"] == "ok":
            good = n
        else:
            bad = n
            break
    else:
        stopped = "all passed"
    while bad is not None and stopped != "budget":
        lo = good or 0
        steps = (bad - lo - 1) // granularity  # multiples of granularity strictly between lo and bad
        if steps < 1:
            break
        mid = lo + max(1, (steps + 1) // 2) * granularity
        r = run(mid)
        if r is None:
            break
        if r["status"] == "ok":
            good = mid
        else:
            bad = mid
    if bad is not None and stopped != "budget":
        stopped = "done"
    return {"trials": trials, "longest": good, "first_failure": bad, "stopped": stopped}


# --------------------------------------------------------------------------- one trial

def long_model_view(model: Path, max_positions: int, work: Path) -> Path:
    """A folder that links to every file of ``model`` but has its own config.json with
    max_position_embeddings raised to ``max_positions`` (the model itself is left as it is:
    --model-dir keeps it for the other workloads)."""
    view = work / f"{model.name}-ctx{max_positions}"
    view.mkdir(parents=True, exist_ok=True)
    for f in model.iterdir():
        if f.name != "config.json" and not (view / f.name).exists():
            (view / f.name).symlink_to(f.resolve())
    cfg = json.loads((model / "config.json").read_text())
    cfg["max_position_embeddings"] = max(int(cfg.get("max_position_embeddings") or 0), max_positions)
    (view / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return view


def write_long_records(path: Path, length: int, records: int) -> Path:
    """Pretraining records of ``length`` random words: every word is at least one token, so
    each record fills a row of ``length`` tokens and is cut there."""
    import random

    rng = random.Random(length)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(5000)]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(records):
            f.write(json.dumps({"text": " ".join(rng.choices(vocab, k=length))}) + "\n")
    return path


def tunewiz_trial(side: str, method: str, model: Path, length: int, timeout: float, budget_cut: bool,
                  work: Path, logs: Path) -> dict:
    """One ``tunewiz train`` of STEPS steps on rows of ``length`` tokens."""
    from bench_peers import child_env, tunewiz_sections
    from tunewiz.engine.contract.config import config_from_dict, dump_yaml
    from tunewiz.engine.contract.events import read_events

    trial_dir = work / f"{side.replace('=', '-')}-{length}"
    runs = trial_dir / "runs"
    trial_dir.mkdir(parents=True, exist_ok=True)
    data = write_long_records(trial_dir / "long.jsonl", length, STEPS + 2)
    train_keys, sections = tunewiz_sections(side)
    train = {"max_steps": STEPS, "batch_size": 1, "grad_accum": 1, "gradient_checkpointing": True, "auto_batch": False,
             "lr": 2e-5 if method == "full" else 2e-4, "save_every": STEPS + 1, **train_keys}
    cfg = config_from_dict({
        "name": "long", "output_dir": str(runs), "model": {"path": str(model)}, "method": method,
        "stage": "pretrain", "data": {"files": [str(data)], "format": "pretrain", "max_length": length},
        "train": train, "eval": {"inputs": [], "every": 0}, **sections})
    config = trial_dir / "config.yaml"
    config.write_text(dump_yaml(cfg), encoding="utf-8")
    log = logs / f"long.{side.replace('=', '-')}.{length}.log"
    t0 = time.time()
    events: list[dict] = []
    timed_out = False
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tunewiz", "train", str(config)], env=child_env(),
                                stdout=out, stderr=subprocess.STDOUT, cwd=trial_dir)
        try:
            while True:
                found = list(runs.glob("*/events.jsonl"))
                events = read_events(found[0]) if found else []
                if any(e["type"] == "step" and e["step"] >= STEPS for e in events):
                    break  # both steps are in; the final checkpoint would only cost time
                if proc.poll() is not None:
                    found = list(runs.glob("*/events.jsonl"))
                    events = read_events(found[0]) if found else []
                    break
                if time.time() - t0 > timeout:
                    timed_out = True
                    break
                time.sleep(0.5)
        finally:
            proc.kill()
            proc.wait()
    seconds = time.time() - t0
    steps = [e for e in events if e["type"] == "step"]
    if len(steps) >= STEPS:
        last, before = steps[STEPS - 1], steps[STEPS - 2]
        # Step 1 holds the allocator's growth (and, compiled, the compile): the rate is step 2's.
        rate = last["tokens"] / (last["t"] - before["t"]) if STEPS > 1 else last["tokens_per_s"]
        return {"status": "ok", "peak_gib": max(e["mem_gib"] for e in steps), "tokens_per_s": rate,
                "row_tokens": last["tokens"], "seconds": seconds, "log": log.name}
    if timed_out:
        return {"status": "budget" if budget_cut else "timeout", "seconds": seconds, "log": log.name}
    errors = [e for e in events if e["type"] == "error"]
    if errors:
        kind = errors[-1]["kind"]
        return {"status": "oom" if kind == "oom" else "error", "kind": kind, "msg": errors[-1]["msg"],
                "seconds": seconds, "log": log.name}
    return {"status": "error", "kind": "exit", "msg": _last_line(log), "seconds": seconds, "log": log.name}


def peer_trial(side: str, method: str, model: Path, length: int, timeout: float, budget_cut: bool,
               work: Path, logs: Path) -> dict:
    """One peer_full_rows.py run (HF Trainer + peft, with or without Liger) of STEPS steps."""
    from bench_peers import child_env

    out = work / f"{side}-{length}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "peer_full_rows.py"), str(model), str(out), "--method", method,
           "--batch-size", "1", "--max-length", str(length), "--steps", str(STEPS), "--gradient-checkpointing"]
    cmd += ["--liger"] * (side == "liger")
    log = logs / f"long.{side}.{length}.log"
    t0 = time.time()
    try:
        with open(log, "w") as f:
            code = subprocess.run(cmd, env=child_env(), stdout=f, stderr=subprocess.STDOUT, cwd=work,
                                  timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return {"status": "budget" if budget_cut else "timeout", "seconds": time.time() - t0, "log": log.name}
    seconds = time.time() - t0
    if code == 0 and out.exists():
        res = json.loads(out.read_text())
        marks = res["step_times"]
        rate = length / (marks[-1] - marks[-2]) if len(marks) > 1 else None
        return {"status": "ok", "peak_gib": res["peak_gib"], "tokens_per_s": rate, "row_tokens": length,
                "seconds": seconds, "log": log.name}
    text = log.read_text(errors="replace")
    if "OutOfMemoryError" in text or "CUDA out of memory" in text:
        return {"status": "oom", "kind": "oom", "msg": "CUDA out of memory", "seconds": seconds, "log": log.name}
    return {"status": "error", "kind": "exit", "msg": _last_line(log), "seconds": seconds, "log": log.name}


def _last_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


# --------------------------------------------------------------------------- the mode

def main(args) -> int:
    from bench_peers import PEERS

    try:
        lengths = [parse_length(x) for x in args.lengths.split(",") if x.strip()]
        granularity = parse_length(args.granularity)
    except ValueError as e:
        sys.exit(f"bench: --lengths/--granularity: {e}")
    if not lengths:
        sys.exit("bench: --lengths names no length")
    sides = (args.sides or "tunewiz").split(",")
    for side in sides:
        if not (side.startswith("tunewiz") or side in PEERS):
            sys.exit(f"bench: unknown side {side!r} (tunewiz[+KEY=VALUE...], {', '.join(PEERS)})")
    method = args.method or "qlora"
    model_name = args.model or "internlm2-7b-shape"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tunewiz-long-"))
    t0 = time.time()
    model = _prepare_model_in_child(model_name, Path(args.model_dir) if args.model_dir else work)
    # The bisection never goes past the longest listed length, so that is the cap.
    view = long_model_view(model, max(lengths), work)
    print(f"model ready in {time.time() - t0:.0f}s: {model_name}, {method}, batch 1, gradient checkpointing, "
          f"{STEPS} steps per trial; lengths {','.join(short(n) for n in sorted(set(lengths)))}, "
          f"granularity {short(granularity)}, budget {args.budget_s:.0f}s per side", flush=True)
    found = {}
    try:
        for side in sides:
            run_one = tunewiz_trial if side.startswith("tunewiz") else peer_trial

            def trial(n: int, left: float, side=side, run_one=run_one) -> dict:
                timeout = min(args.child_timeout, left)
                r = run_one(side, method, view, n, timeout, timeout < args.child_timeout, work, out)
                print(f"  {side:22s} {short(n):>6s}  {_row(r)}", flush=True)
                return r

            found[side] = search(trial, lengths, granularity, args.budget_s, args.min_trial_s)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    result = {"mode": "long-context", "model": model_name, "method": method, "batch_size": 1,
              "gradient_checkpointing": True, "steps_per_trial": STEPS, "lengths": lengths,
              "granularity": granularity, "budget_s": args.budget_s, "child_timeout": args.child_timeout,
              "sides": found}
    path = out / "long_context.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"\nfigures in {path}")
    return 0


def _prepare_model_in_child(name: str, folder: Path) -> Path:
    """prepare_model in a process of its own: built here, the random model would leave this
    process a CUDA context (and allocator cache) on the GPU the trials measure."""
    if name not in SHAPES:
        return prepare_model(name, folder, "cpu")  # a folder: only resolved, nothing built
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import torch; from pathlib import Path; "
            "from bench_models import prepare_model; "
            "print(prepare_model(sys.argv[2], Path(sys.argv[3]), 'cuda' if torch.cuda.is_available() else 'cpu'))")
    done = subprocess.run([sys.executable, "-c", code, str(HERE), name, str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench: building {name} failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _row(r: dict) -> str:
    if r["status"] == "ok":
        return f"ok    {r['peak_gib']:6.1f} GiB {r['tokens_per_s']:9,.0f} tok/s  ({r['seconds']:.0f}s)"
    why = f"{r.get('kind', '')}: {r.get('msg', '')}" if r["status"] == "error" else ""
    return f"{r['status']:5s} ({r['seconds']:.0f}s) {why}".rstrip()


def report(result: dict) -> None:
    """The trials of every side, in the order run, and each side's longest length."""
    print(f"\n{'side':22s} {'length':>8s} {'result':8s} {'peak GiB':>9s} {'tok/s':>9s} {'trial s':>8s}")
    for side, s in result["sides"].items():
        for r in s["trials"]:
            ok = r["status"] == "ok"
            peak = f"{r['peak_gib']:.1f}" if ok else "-"
            rate = f"{r['tokens_per_s']:,.0f}" if ok and r.get("tokens_per_s") else "-"
            print(f"{side:22s} {short(r['length']):>8s} {r['status']:8s} {peak:>9s} {rate:>9s} {r['seconds']:8.0f}")
    print()
    for side, s in result["sides"].items():
        longest = f"{short(s['longest'])} ({s['longest']:,} tokens)" if s["longest"] else "none"
        if s["stopped"] == "all passed":
            tail = "every length listed trained; list longer ones to go further"
        elif s["first_failure"]:
            first = next(r for r in s["trials"] if r["length"] == s["first_failure"])
            tail = f"{short(s['first_failure'])} failed ({first['status']})"
            if s["stopped"] == "budget":
                tail += "; the budget ran out before the gap was closed"
        else:
            tail = "the budget ran out before any failure"
        print(f"longest {side}: {longest}; {tail}")
