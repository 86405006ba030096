"""bench/chart.py: a real PNG from bench_peers.py results."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "bench" / "chart.py"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def colours(path: Path) -> set[tuple[int, int, int]]:
    import matplotlib.image

    pixels = (matplotlib.image.imread(path)[..., :3] * 255).round().astype(int)
    return {tuple(p) for p in pixels.reshape(-1, 3)}


def test_the_docs_figures_chart_as_a_png_with_a_bar_colour_per_side(tmp_path):
    pytest.importorskip("matplotlib", reason="pip install -e '.[bench]'")
    out = tmp_path / "bench.png"
    r = subprocess.run([sys.executable, str(CHART), str(REPO / "bench" / "results" / "bench-md-main-table.json"),
                        "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    width, height = png_size(out)
    assert width >= 800 and height >= 400 and out.stat().st_size > 10_000
    seen = colours(out)
    # matplotlib's first three cycle colours: tunewiz, HF + Liger, plain HF
    assert {(31, 119, 180), (255, 127, 14), (44, 160, 44)} <= seen


def test_a_results_jsonl_with_only_two_sides_has_no_third_bar(tmp_path):
    pytest.importorskip("matplotlib", reason="pip install -e '.[bench]'")
    rows = [{"workload": "lora-b4", "side": "tunewiz", "tokens_per_s": 50000.0, "peak_gib": 26.0},
            {"workload": "lora-b4", "side": "liger", "tokens_per_s": 36000.0},
            {"workload": "lora-b4", "side": "hf", "error": "out of memory"}]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "two.png"
    r = subprocess.run([sys.executable, str(CHART), str(results), "-o", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    png_size(out)
    seen = colours(out)
    assert {(31, 119, 180), (255, 127, 14)} <= seen and (44, 160, 44) not in seen


def test_a_broken_results_line_is_named(tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_text('{"workload": "lora-b4", "side": "tunewiz", "tokens_per_s": 1}\n{"workload": \n')
    r = subprocess.run([sys.executable, str(CHART), str(results), "-o", str(tmp_path / "x.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and not (tmp_path / "x.png").exists()
    assert r.stderr.startswith(f"chart: {results}:2: not JSON") and len(r.stderr.strip().splitlines()) == 1
