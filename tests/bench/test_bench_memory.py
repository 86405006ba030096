"""bench_memory.py on the CPU with the tiny model: real runs, their measured peaks beside the
estimate, the table and the JSON (the GPU figures come from the same code on a GPU)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.bench_scripts import run_bench

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "bench_memory.py"


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_bench(SCRIPT.name, *args, cwd=cwd)


def test_real_runs_on_the_cpu_give_the_table_and_the_json(tiny_model, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny").symlink_to(tiny_model)      # --model-dir's cached model: nothing is built
    out = tmp_path / "results" / "memory.json"
    r = bench("--device", "cpu", "--shape", "tiny", "--configs", "lora-b4,full-b2-ckpt", "--max-length", "64",
              "--steps", "2", "--model-dir", str(models), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["steps"] == 2
    rows = {row["config"]: row for row in result["results"]}
    assert list(rows) == ["lora-b4", "full-b2-ckpt"]
    for row in rows.values():
        assert len(row["step_mem_gib"]) == 2 and row["measured_gib"] == max(row["step_mem_gib"]) > 0.1
        assert row["error_pct"] == pytest.approx(100 * (row["predicted_gib"] / row["measured_gib"] - 1), abs=0.1)
        assert "error" not in row and "float32" in row["measured_setup"]
        # The prediction is the estimate's own for that config and model (CPU: RAM, fp32).
        assert row["parts"]["process"] > 0 and row["predicted_gib"] == pytest.approx(sum(row["parts"].values()), abs=0.01)
    assert rows["lora-b4"]["batch"] == 4 and not rows["lora-b4"]["checkpointing"]
    assert rows["full-b2-ckpt"]["method"] == "full" and rows["full-b2-ckpt"]["checkpointing"]
    table = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| config | predicted GiB | measured GiB | error % |"
    assert table[1].startswith("| lora-b4 | ") and table[2].startswith("| full-b2-ckpt | ")
    assert (out.parent / "memory-logs" / "lora-b4.log").is_file()
    # --report prints the same table again from the JSON.
    again = bench("--report", str(out), cwd=tmp_path)
    assert again.returncode == 0 and [line for line in again.stdout.splitlines() if line.startswith("| ")] == table


def test_dry_lists_every_configuration_with_its_prediction(tmp_path):
    out = tmp_path / "dry.json"
    r = bench("--dry", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["results"]
    assert len(rows) >= 8 and {"lora-b4", "qlora7b-b1-ckpt", "full-b2-ckpt"} <= {row["config"] for row in rows}
    by = {row["config"]: row["predicted_gib"] for row in rows}
    assert by["lora-b4-ckpt"] < by["lora-b4"] < by["lora-b8"]
    assert "not run" in r.stdout


def test_qlora_on_the_cpu_is_refused_before_anything_runs(tmp_path):
    r = bench("--device", "cpu", "--configs", "qlora-b4", "--out", str(tmp_path / "x.json"), cwd=tmp_path)
    assert r.returncode == 2 and "QLoRA needs CUDA" in r.stderr
    assert not (tmp_path / "x.json").exists()
