"""bench_fused_loss.py on the CPU: the engine's chunk loop and the compiled-softmax variant
agree on a real loss and its gradients; what only a GPU can run says so in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.bench_scripts import run_bench

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_fused_loss.py"


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_bench("bench_fused_loss.py", *args, cwd=cwd)


def test_the_compiled_softmax_variant_matches_the_engine_on_a_trained_head(tmp_path):
    out = tmp_path / "loss.json"
    r = bench("--device", "cpu", "--variants", "engine,compiled-softmax", "--tokens", "200", "--vocab", "1000",
              "--hidden", "64", "--trained-head", "--iters", "1", "--json", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    engine, compiled = json.loads(out.read_text())["results"]
    assert (engine["variant"], compiled["variant"]) == ("engine", "compiled-softmax")
    assert engine["loss"] > 0 and engine["ms"] > 0
    assert engine["max_rel_diff_vs_engine"] == {"loss": 0.0, "hidden": 0.0, "weight": 0.0}
    diff = compiled["max_rel_diff_vs_engine"]
    assert set(diff) == {"loss", "hidden", "weight"}
    assert diff["loss"] < 1e-5 and diff["hidden"] < 1e-2 and diff["weight"] < 1e-2   # bf16 rounding apart


def test_gpu_only_variants_on_a_cpu_are_one_line_errors(tmp_path):
    r = bench("--device", "cpu", "--variants", "engine,gemm-sum", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--device cpu runs --variants" in r.stderr
    r = bench("--variants", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "unknown nope" in r.stderr
    r = bench(cwd=tmp_path)     # CUDA hidden: no GPU here
    assert r.returncode == 1 and "no CUDA GPU here" in r.stderr
