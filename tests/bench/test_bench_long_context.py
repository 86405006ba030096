"""bench_peers.py --long-context: real `tunewiz train` trials on the tiny model (CPU), and the search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import bench_long_context as lc  # noqa: E402

from support.bench_scripts import run_bench


def bench(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return run_bench("bench_peers.py", *args, cwd=tmp_path, timeout=300)


def test_each_trial_trains_full_rows_of_its_length_and_the_longest_is_reported(tmp_path):
    """The bench's own `tiny` shape, built as the 7B one is (in a child process, into
    --model-dir), then one real `tunewiz train` per length."""
    out, models = tmp_path / "out", tmp_path / "models"
    r = bench("--long-context", "--model", "tiny", "--model-dir", str(models), "--method", "lora",
              "--lengths", "32,80", "--granularity", "16", "--min-trial-s", "0", "--out", str(out), tmp_path=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (models / "tiny" / "config.json").is_file()   # kept for the next call; the view is gone
    assert json.loads((models / "tiny" / "config.json").read_text())["max_position_embeddings"] == 8192
    result = json.loads((out / "long_context.json").read_text())
    found = result["sides"]["tunewiz"]
    assert [t["length"] for t in found["trials"]] == [32, 80]
    for t in found["trials"]:
        assert t["status"] == "ok", t
        assert t["row_tokens"] == t["length"]   # one full row of exactly that many tokens per step
        assert t["tokens_per_s"] > 0 and t["peak_gib"] > 0
        assert (out / t["log"]).is_file()   # named relative to --out, so results carry no machine paths
    assert found["longest"] == 80 and found["first_failure"] is None and found["stopped"] == "all passed"
    assert "longest tunewiz: 80 (80 tokens); every length listed trained" in r.stdout
    table = [line.split() for line in r.stdout.splitlines() if line.startswith("tunewiz ")]
    assert [row[1:3] for row in table] == [["32", "ok"], ["80", "ok"]]


def test_the_model_view_takes_the_longest_length_and_leaves_the_model_alone(tiny_model, tmp_path):
    before = (tiny_model / "config.json").read_text()
    view = lc.long_model_view(tiny_model, 131072, tmp_path)
    assert json.loads((view / "config.json").read_text())["max_position_embeddings"] == 131072
    assert (tiny_model / "config.json").read_text() == before
    weights = view / "model.safetensors"
    assert weights.is_symlink() and weights.resolve() == (tiny_model / "model.safetensors").resolve()
    assert (view / "tokenizer.json").is_file()


def memory_limit(limit: int, clock: list[float], seconds: float = 10.0):
    """A trial whose outcome is that of a GPU holding rows up to `limit` tokens; each trial
    moves the clock on by `seconds`."""
    def trial(n: int, left: float) -> dict:
        clock[0] += min(seconds, left)
        if seconds > left:
            return {"status": "budget", "seconds": left}
        return {"status": "ok" if n <= limit else "oom", "seconds": seconds}
    return trial


K = 1024


@pytest.mark.parametrize("limit, tried, longest", [
    # 8k..64k pass, 96k fails: bisect 64k..96k on 4k steps
    (70 * K, [8, 16, 32, 64, 96, 80, 72, 68], 68 * K),
    # everything listed passes
    (1000 * K, [8, 16, 32, 64, 96, 128], 128 * K),
    # the first length fails: bisect from nothing
    (5 * K, [8, 4], 4 * K),
    (3 * K, [8, 4], None),
])
def test_search_bisects_between_the_last_pass_and_the_first_failure(limit, tried, longest):
    clock = [0.0]
    got = lc.search(memory_limit(limit, clock), [lc.parse_length(x) for x in lc.DEFAULT_LENGTHS.split(",")],
                    4 * K, budget_s=1e6, clock=lambda: clock[0])
    assert [t["length"] // K for t in got["trials"]] == tried
    assert got["longest"] == longest
    if got["first_failure"] is not None:
        assert got["first_failure"] - (got["longest"] or 0) <= 4 * K


def test_search_stops_when_the_budget_runs_out():
    clock = [0.0]
    got = lc.search(memory_limit(70 * K, clock, seconds=10), [8 * K, 16 * K, 32 * K], 4 * K, budget_s=25,
                    clock=lambda: clock[0])
    # 8k and 16k fit in 25 s; the 32k trial is cut at the budget and says nothing about 32k
    assert [(t["length"] // K, t["status"]) for t in got["trials"]] == [(8, "ok"), (16, "ok"), (32, "budget")]
    assert got["longest"] == 16 * K and got["first_failure"] is None and got["stopped"] == "budget"
    clock = [0.0]
    got = lc.search(memory_limit(70 * K, clock, seconds=10), [8 * K, 16 * K, 32 * K], 4 * K, budget_s=25,
                    min_trial_s=6, clock=lambda: clock[0])
    assert [t["length"] // K for t in got["trials"]] == [8, 16]   # 5 s left: not enough to start one


def test_lengths_read_as_tokens():
    assert lc.parse_length("96k") == 98304 and lc.parse_length("4096") == 4096
    with pytest.raises(ValueError, match="not a length"):
        lc.parse_length("lots")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "bench_peers.py"), "--long-context", "--lengths", "8k,x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == "bench: --lengths/--granularity: 'x' is not a length (write 4096 or 4k)"
