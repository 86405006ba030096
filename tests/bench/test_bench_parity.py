"""bench_peers.py --parity-steps: tunewiz and the HF peer on the same packed rows (tiny model, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import bench_parity  # noqa: E402


def test_both_sides_train_the_same_batches_and_their_curves_agree(tiny_model, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, str(REPO / "bench" / "bench_peers.py"), "--parity-steps", "4",
                        "--sides", "tunewiz,hf", "--model", str(tiny_model), "--max-length", "256",
                        "--window", "2", "--out", str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads((out / "parity.json").read_text())
    tw, hf = result["per_side"]["tunewiz"], result["per_side"]["hf"]
    assert len(tw["losses"]) == len(hf["losses"]) == 4
    assert result["same_batches"] and tw["tokens"] == hf["tokens"] and sum(tw["tokens"]) > 0
    assert result["max_lr_diff"] <= 1e-12 and result["peak_lr"] == pytest.approx(2e-4)
    # fp32 on a CPU, same rows, same init: step 1 is the same base model on the same tokens
    assert result["first_step_diff"] < 1e-4
    assert result["pass"] and "PASS: the loss curves agree" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line[:5].strip().isdigit()]
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4]
    assert [float(row[1]) for row in rows] == pytest.approx(tw["losses"], abs=1e-4)
    assert [float(row[2]) for row in rows] == pytest.approx(hf["losses"], abs=1e-4)

    # The same real curves, one of them moved: a shift of 5% of the loss is past the bar,
    # and a changed first step fails on its own.
    moved = bench_parity.compare(tw["losses"], [x * 1.05 for x in hf["losses"]], 2)
    assert not moved["pass"] and not moved["curve_ok"] and not moved["first_step_ok"]
    late = bench_parity.compare(tw["losses"], hf["losses"][:2] + [x + 0.5 for x in hf["losses"][2:]], 2)
    assert late["first_step_ok"] and not late["curve_ok"] and late["worst_step"] >= 3


def test_moving_average_is_over_the_trailing_window():
    assert bench_parity.moving_average([1.0, 2.0, 3.0, 4.0], 2) == [None, 1.5, 2.5, 3.5]
    got = bench_parity.compare([2.0, 2.0, 2.0], [2.0, 2.0, 2.06], 3)
    # one step 0.06 apart, averaged over 3 steps: 0.02, inside 2% of the loss (0.04)
    assert got["max_abs_ma_diff"] == pytest.approx(0.02) and got["pass"]


def test_parity_takes_tunewiz_then_one_peer():
    r = subprocess.run([sys.executable, str(REPO / "bench" / "bench_peers.py"), "--parity-steps", "5",
                        "--sides", "liger,tunewiz"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("bench: --parity-steps compares two sides, tunewiz[+KEY=VALUE...] then one of")
