"""The profiling tools of bench/: the hook that profiles a real training process from outside
(profile_hook/sitecustomize.py), the summary of its tables (profile_summary.py), and
bench_attention.py's refusal off a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.bench_scripts import run_bench
from support.runs import write_config, write_data

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "bench" / "profile_hook"
PROFILES = REPO / "bench" / "results" / "profiles"
sys.path.insert(0, str(REPO / "bench"))

import profile_summary  # noqa: E402


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWIZ_BENCH_PROFILE")}
    return {**env, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": os.pathsep.join([str(HOOK), env.get("PYTHONPATH", "")]), **extra}


def test_the_hook_profiles_the_optimizer_steps_of_a_real_training_run(tiny_model, tmp_path):
    data = write_data(tmp_path / "d.jsonl", n=16)
    cfg = write_config(tmp_path, tiny_model, data, train__max_steps=6, eval={"inputs": [], "every": 0})
    prefix = tmp_path / "prof"
    r = subprocess.run([sys.executable, "-m", "tunewiz", "train", str(cfg)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, env=_env(TUNEWIZ_BENCH_PROFILE=str(prefix),
                                                        TUNEWIZ_BENCH_PROFILE_FROM="2",
                                                        TUNEWIZ_BENCH_PROFILE_STEPS="3",
                                                        TUNEWIZ_BENCH_PROFILE_HOST="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    # Only the process that steps an optimizer writes them: the training itself.
    [host] = list(tmp_path.glob("prof.*.host.txt"))
    [table] = [p for p in tmp_path.glob("prof.*.txt") if p != host]
    assert host.name == table.name.replace(".txt", ".host.txt")
    assert "Self CPU" in host.read_text()
    command, window, *rows = table.read_text().splitlines()
    assert "tunewiz" in command and "train" in command
    assert window == "3 optimizer steps after 2"
    step_rows = [row for row in rows if "AdamW.step" in row]
    assert step_rows and step_rows[0].split()[-1] == "3"   # '# of Calls': the three profiled steps


def test_without_its_variable_the_hook_does_nothing_and_imports_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import sys; print('torch' in sys.modules)"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_the_summary_groups_a_gpu_table_by_kind_of_work():
    full = dict((group, ms) for group, ms, _ in profile_summary.summary(PROFILES / "full-b16-tunewiz-h200.txt"))
    peer = dict((group, ms) for group, ms, _ in profile_summary.summary(PROFILES / "full-b16-liger-h200.txt"))
    for groups in (full, peer):
        total = groups.pop("total")
        assert abs(sum(groups.values()) - total) < 0.05   # every listed kernel in one group, plus 'unlisted'
    # tunewiz's full step runs its decoder products in FP8; the peer's are all bf16, with Liger's kernels.
    assert full["FP8 matrix products"] > full["bf16 matrix products"] > 0
    assert "FP8 matrix products" not in peer and peer["Liger kernels"] > 0
    assert peer["bf16 matrix products"] > 400   # ms per step at 16 x 2,048 tokens on an H200


def test_the_summary_names_a_table_that_is_not_a_gpu_profile(tmp_path):
    cpu_table = tmp_path / "cpu.txt"
    cpu_table.write_text("Name  Self CPU %\nSelf CPU time total: 3.1ms\n")
    r = run_bench("profile_summary.py", str(cpu_table), cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and "cpu.txt: no 'Self CUDA time total' line" in r.stderr


def test_bench_attention_off_a_gpu_is_a_one_line_error(tmp_path):
    r = run_bench("bench_attention.py", cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == "bench_attention needs a CUDA GPU"
