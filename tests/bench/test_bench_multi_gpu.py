"""bench_multi_gpu.py on CPU processes (gloo) with the tiny model: one process against two at
the same global batch, through the real CLI and torchrun, as a 2-GPU machine runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.bench_scripts import run_bench

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "bench_multi_gpu.py"


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_bench(SCRIPT.name, *args, cwd=cwd, env={"OMP_NUM_THREADS": "1"})


def table(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("| ")]


def test_one_process_against_two_at_the_same_global_batch(tiny_model, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny").symlink_to(tiny_model)      # --model-dir's cached model: nothing is built
    out = tmp_path / "results" / "multi.json"
    r = bench("--device", "cpu", "--model", "tiny", "--model-dir", str(models), "--gpus", "2", "--cases", "ddp-lora",
              "--max-length", "64", "--warmup-steps", "1", "--steps", "3", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["gpus"] == 2 and doc["steps"] == 3
    [case] = doc["results"]
    one, many = case["one"], case["many"]
    # The global batch is the same: 1 process accumulates 2 x 2 micro-batches, each of the 2
    # processes 2, and every step trains the same tokens on both sides.
    assert one["speed"]["grad_accum"] == 2 * many["speed"]["grad_accum"] == 4
    assert one["speed"]["batch_size"] == many["speed"]["batch_size"] == 4
    assert (one["world_size"], many["world_size"]) == (1, 2) and many["layout"] == "ddp"
    assert len(one["step_tokens"]) == len(many["step_tokens"]) == 4
    assert one["step_tokens"] == many["step_tokens"] and sum(one["step_tokens"]) > 0
    assert one["step_trained_tokens"] == many["step_trained_tokens"] and case["same_batch"]
    # ...so the loss curves match (fp32 on the CPU: only the summation order differs).
    assert one["losses"] == pytest.approx(many["losses"], rel=1e-4)
    assert case["max_loss_diff"] == max(abs(a - b) for a, b in zip(one["losses"], many["losses"])) < 1e-3
    assert case["ratio"] == pytest.approx(many["tokens_per_s"] / one["tokens_per_s"])
    for side in (one, many):
        assert side["tokens_per_s"] > 0 and side["peak_gib"] > 0.05
        # What each run said about its speed paths, from its own start event and logs.
        speed = side["speed"]
        assert speed["device"] == "cpu" and speed["world_size"] == side["world_size"]
        assert speed["attention"] == "sdpa"            # varlen is a CUDA kernel
        assert speed["loss"] == "fused"                # the fused loss reaches DDP
        assert speed["compile"] == "auto: off" and speed["auto_batch"] == "off (config: false)"
    rows = table(r.stdout)
    assert rows[0] == ("| case | 1-proc tok/s | 2-proc tok/s | ratio | target | peak GiB/proc (1 / 2) | max loss diff "
                       "| same batch |")
    assert rows[1].startswith(f"| ddp-lora | {one['tokens_per_s']:,.0f} | {many['tokens_per_s']:,.0f} | "
                              f"{case['ratio']:.2f}x | 1.9x | ")
    assert rows[1].endswith(" | yes |")
    assert rows[2] == "| case | procs | layout | attention | loss | compile | auto_batch |"
    assert rows[3] == "| ddp-lora | 1 | one process | sdpa | fused | auto: off | off (config: false) |"
    assert rows[4] == "| ddp-lora | 2 | ddp | sdpa | fused | auto: off | off (config: false) |"
    # Both runs were stopped after their last step: no rank is left behind.
    assert not subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).stdout
    assert (out.parent / "multi-logs" / "ddp-lora.2.log").is_file()
    # --report prints the same tables again from the JSON.
    again = bench("--report", str(out), cwd=tmp_path)
    assert again.returncode == 0 and table(again.stdout) == rows


def test_gpu_only_cases_on_the_cpu_are_refused_before_anything_runs(tmp_path):
    r = bench("--device", "cpu", "--cases", "ddp-lora,zero2-full", "--out", str(tmp_path / "x.json"), cwd=tmp_path)
    assert r.returncode == 2 and "zero2-full needs CUDA" in r.stderr
    assert not (tmp_path / "x.json").exists()
    r = bench("--cases", "ddp-lora", "--gpus", "1", "--out", str(tmp_path / "x.json"), cwd=tmp_path)
    assert r.returncode == 2 and "--gpus must be at least 2" in r.stderr
