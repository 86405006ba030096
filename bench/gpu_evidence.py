"""GPU evidence for docs/gpu.md: train an InternLM2-1.8B-shaped Llama (random weights)
through the real `tunewiz train` CLI in each layout, and print tokens/s, peak memory per
GPU and losses.

    python bench/gpu_evidence.py --out results/ single      # 1 GPU: LoRA, QLoRA, full
    python bench/gpu_evidence.py --out results/ multi       # 2 GPUs: ZeRO-2/3, QLoRA DDP, 2 nodes
    python bench/gpu_evidence.py --out results/ CASE ...    # any cases by name

Each case writes its run under --out/runs and one JSON line to --out/evidence.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tunewiz.engine.contract.rundir import is_other_node

SHAPE_18B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=8, vocab_size=92544, max_position_embeddings=4096)

# name -> (config overrides, gpus, deepspeed)
CASES = {
    "lora-ckpt-b1": dict(method="lora", ckpt=True, batch=1),
    "lora-b1": dict(method="lora", ckpt=False, batch=1),
    "lora-b4": dict(method="lora", ckpt=False, batch=4),
    "qlora-ckpt-b1": dict(method="qlora", ckpt=True, batch=1),
    "qlora-ckpt-b8": dict(method="qlora", ckpt=True, batch=8),
    "full-ckpt-b1": dict(method="full", ckpt=True, batch=1),
    "zero2-lora-2gpu": dict(method="lora", ckpt=True, batch=1, gpus=2, deepspeed="zero2"),
    "zero3-lora-2gpu": dict(method="lora", ckpt=True, batch=1, gpus=2, deepspeed="zero3", eval=True),
    "zero2-full-2gpu": dict(method="full", ckpt=True, batch=1, gpus=2, deepspeed="zero2"),
    "zero3-full-2gpu": dict(method="full", ckpt=True, batch=1, gpus=2, deepspeed="zero3"),
    "qlora-ddp-2gpu": dict(method="qlora", ckpt=True, batch=1, gpus=2),
    "curve-1gpu": dict(method="lora", ckpt=True, batch=1, accum=4, steps=16, dropout=0.0),
    "curve-2gpu": dict(method="lora", ckpt=True, batch=1, accum=2, steps=16, dropout=0.0, gpus=2),
}
GROUPS = {
    "single": ["lora-ckpt-b1", "lora-b1", "lora-b4", "qlora-ckpt-b1", "qlora-ckpt-b8", "full-ckpt-b1"],
    "multi": ["zero2-lora-2gpu", "zero3-lora-2gpu", "zero2-full-2gpu", "zero3-full-2gpu", "qlora-ddp-2gpu",
              "curve-1gpu", "curve-2gpu", "two-nodes"],
}


def build_model(dest: Path) -> Path:
    if (dest / "config.json").is_file():
        return dest
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import torch
    from support.tiny_model import build_tiny_model
    from transformers import AutoConfig, LlamaForCausalLM

    t = time.time()
    build_tiny_model(dest)  # its tokenizer; the weights are replaced below
    cfg = AutoConfig.from_pretrained(dest)
    for k, v in SHAPE_18B.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(dest)
    del model
    torch.cuda.empty_cache()
    print(f"built the 1.8B-shaped model in {time.time() - t:.0f}s", flush=True)
    return dest


def write_data(path: Path) -> Path:
    """Varied conversations, enough for every case's steps at 2048 tokens a row."""
    recs = []
    for i in range(6000):
        q = f"Question {i}: what do you know about topic {i % 113} and its relation to item {i % 37}?"
        a = " ".join(f"fact{(i * 7 + j) % 211} about lighthouse{j % 13}" for j in range(40))
        recs.append({"conversation": [{"input": q, "output": a}]})
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def config(out: Path, name: str, model: Path, data: Path, spec: dict, port: int, **layout) -> Path:
    method = spec["method"]
    cfg = {
        "name": name, "output_dir": str(out / "runs"), "model": {"path": str(model)},
        "method": method, "stage": "sft",
        "lora": {"r": 64, "alpha": 16, "dropout": spec.get("dropout", 0.1), "target": "all-linear"},
        "data": {"files": [str(data)], "max_length": 2048, "pack": True},
        "train": {"max_steps": spec.get("steps", 12), "batch_size": spec["batch"],
                  "grad_accum": spec.get("accum", 1), "lr": 2e-5 if method == "full" else 2e-4,
                  "save_every": 1000, "gradient_checkpointing": spec["ckpt"], "auto_batch": False, "warmup_ratio": 0.03},
        "eval": {"inputs": ["Please introduce yourself"] if spec.get("eval") else [], "every": 6,
                 "max_new_tokens": 16},
        "layout": {"gpus": spec.get("gpus", 1), "deepspeed": spec.get("deepspeed", "none"),
                   "master_port": port, **layout},
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def summarize(run: Path, name: str, spec: dict, seconds: float) -> dict:
    evs = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    steps = [e for e in evs if e["type"] == "step"]
    start = next((e for e in evs if e["type"] == "start"), {})
    done = evs[-1] if evs and evs[-1]["type"] == "done" else {}
    errors = [e for e in evs if e["type"] == "error"]
    measured = steps[3:] or steps  # the first steps include warm-up and allocator growth
    return {
        "case": name, "status": done.get("status", "unknown"), "world_size": start.get("world_size"),
        "method": spec["method"], "deepspeed": spec.get("deepspeed", "none"), "batch": spec["batch"],
        "grad_ckpt": spec["ckpt"],
        "tokens_per_s": round(statistics.median(e["tokens_per_s"] for e in measured), 1) if measured else None,
        "peak_gib_rank0": max((e["mem_gib"] for e in steps), default=None),
        "losses": [e["loss"] for e in steps], "wall_s": round(seconds, 1),
        "error": errors[-1] if errors else None, "run": str(run),
        "evals": [e["samples"] for e in evs if e["type"] == "eval"],
    }


def run_tunewiz(args: list[str], timeout_s: float, env: dict | None = None) -> tuple[int, str]:
    """Run `tunewiz ARGS`; on timeout ask every rank for its Python stacks (they land in
    the rank logs, see engine/train.py) before killing the whole process group."""
    proc = subprocess.Popen([sys.executable, "-m", "tunewiz", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    try:
        out = proc.communicate(timeout=timeout_s)[0]
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        ranks = subprocess.run(["pgrep", "-s", str(proc.pid), "-f", "--run-dir"], capture_output=True, text=True)
        for pid in ranks.stdout.split():
            os.kill(int(pid), signal.SIGUSR1)
        time.sleep(5)
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        return 124, out + f"\n--- timed out after {timeout_s:.0f}s; stacks dumped into the rank logs\n"


def log_tails(run: Path | None, chars: int = 6000) -> str:
    if run is None:
        return ""
    return "".join(f"\n=== {f.name}\n{f.read_text(errors='replace')[-chars:]}"
                   for f in sorted((run / "logs").glob("*.log")))


def run_case(out: Path, name: str, model: Path, data: Path, port: int, timeout_s: float) -> dict:
    spec = CASES[name]
    cfg = config(out, name, model, data, spec, port)
    t = time.time()
    rc, text = run_tunewiz(["train", str(cfg)], timeout_s)
    runs = sorted((out / "runs").glob(f"{name}-*"), key=lambda p: p.stat().st_mtime)
    run = runs[-1] if runs else None
    (out / f"{name}.log").write_text(f"rc {rc}\n{text[-20000:]}{log_tails(run)}")
    if run is None:
        return {"case": name, "status": f"no run (rc {rc})", "tail": text[-1500:]}
    res = summarize(run, name, spec, time.time() - t)
    if rc == 124:
        res["status"] = "timeout"
    return res


def two_nodes(out: Path, model: Path, data: Path, port: int, timeout_s: float) -> dict:
    """2 nodes x 1 GPU on one host: two supervisors, each seeing its own GPU."""
    spec = dict(method="lora", ckpt=True, batch=1, gpus=1)
    cfg = config(out, "two-nodes", model, data, spec, port, nnodes=2, join_timeout_s=120)
    t = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "tunewiz", "train", str(cfg), "--node-rank", str(k)],
                              env={**os.environ, "CUDA_VISIBLE_DEVICES": str(k)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True) for k in (0, 1)]
    logs, timed_out = [], False
    for p in procs:
        try:
            logs.append(p.communicate(timeout=max(timeout_s - (time.time() - t), 1))[0])
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)
            logs.append(p.communicate()[0] + "\n--- timed out\n")
    # Node 1's log folder is "<run>-node1"; node 0's run directory holds the events.
    run = next((p for p in sorted((out / "runs").glob("two-nodes-*")) if not is_other_node(p)), None)
    (out / "two-nodes.log").write_text("\n=== node 1\n".join(logs)[-40000:] + log_tails(run))
    if run is None:
        return {"case": "two-nodes", "status": "no run", "tail": logs[0][-1500:]}
    res = summarize(run, "two-nodes", spec, time.time() - t)
    if timed_out:
        res["status"] = "timeout"
    return res


def zero3_convert_merge_chat(out: Path, model: Path, timeout_s: float) -> dict:
    """The ZeRO-3 LoRA run's sharded checkpoint -> adapter -> merged -> chat."""
    run = sorted((out / "runs").glob("zero3-lora-2gpu-*"))[-1]
    steps = {}
    for name, cmd in [("convert", ["convert", str(run), str(run / "adapter")]),
                      ("merge", ["merge", str(model), str(run / "adapter"), str(run / "merged"), "--dtype", "bf16"]),
                      ("chat", ["chat", str(run / "merged"), "--prompt", "Please introduce yourself",
                                "--max-new-tokens", "16"])]:
        t = time.time()
        rc, text = run_tunewiz(cmd, timeout_s)
        steps[name] = {"rc": rc, "s": round(time.time() - t, 1), "out": text[-1500:]}
    return {"case": "zero3-convert-merge-chat", **steps}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="+", help="case names or groups: " + ", ".join([*GROUPS, *CASES, "two-nodes",
                                                                                    "zero3-convert"]))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=Path("/tmp/tunewiz-18b"))
    p.add_argument("--timeout", type=float, default=600, help="seconds per case before it is killed")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for c in args.cases for n in GROUPS.get(c, [c])]
    model = build_model(args.model)
    data = write_data(args.out / "data.jsonl")
    port = 29700
    for name in names:
        port += 1
        if name == "two-nodes":
            res = two_nodes(args.out, model, data, port, args.timeout)
        elif name == "zero3-convert":
            res = zero3_convert_merge_chat(args.out, model, args.timeout)
        else:
            res = run_case(args.out, name, model, data, port, args.timeout)
        brief = {k: v for k, v in res.items() if k not in ("losses", "evals", "run")}
        print(json.dumps(brief), flush=True)
        with open(args.out / "evidence.jsonl", "a") as f:
            f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
