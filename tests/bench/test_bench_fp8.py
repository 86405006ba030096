"""bench_fp8.py: its measuring loop on the CPU (bf16, tiny shape); FP8 itself needs a Hopper GPU."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

from support.bench_scripts import run_bench

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "bench_fp8.py"


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_bench(SCRIPT.name, *args, cwd=cwd, timeout=300)


def test_the_bf16_run_times_its_steps_and_writes_the_json(tmp_path):
    out = tmp_path / "fp8.json"
    r = bench("--device", "cpu", "--shape", "tiny", "--recipes", "bf16", "--steps", "2", "--warmup-steps", "1",
              "--max-length", "32", "--batch-size", "2", "--json", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert (result["device"], result["steps"]) == ("cpu", 2)
    [row] = result["results"]
    assert row["recipe"] == "bf16" and row["tokens_per_s"] > 0 and row["peak_gib"] is None
    assert math.isfinite(row["first_loss"]) and math.isfinite(row["last_loss"])
    assert "bf16" in r.stdout.splitlines()[-1] and "1.00" in r.stdout.splitlines()[-1]


def test_fp8_recipes_off_a_gpu_are_one_line_errors(tmp_path):
    r = bench("--device", "cpu", "--recipes", "bf16,rowwise", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "rowwise need --device cuda" in r.stderr
    r = bench("--recipes", "bf16,nope", cwd=tmp_path)
    assert r.returncode == 2 and "unknown nope" in r.stderr
    r = bench("--recipes", "bf16", cwd=tmp_path)          # CUDA hidden: no GPU here
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no CUDA GPU here" in r.stderr
