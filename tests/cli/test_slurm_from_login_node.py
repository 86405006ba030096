"""A Slurm script or node commands written on a login node: the config's GPUs decide, not
the GPUs of the machine that writes them (a login node often has none, like this one)."""

from __future__ import annotations

import shlex
import shutil

import pytest

pytestmark = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="stands for a GPU-less login node")


def slurm(cli, tmp_path, layout: str) -> str:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: job\nlayout:\n  nnodes: 2\n{layout}")
    r = cli("train", str(cfg), "--slurm", "-")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_gpus_8_asks_each_node_for_8(tmp_path, cli):
    script = slurm(cli, tmp_path, "  gpus: 8\n")
    assert "#SBATCH --gpus-per-node=8\n" in script
    assert "for its 8 local process(es)" in script
    assert "#SBATCH --nodes=2\n" in script


def test_a_gpu_list_asks_for_as_many(tmp_path, cli):
    script = slurm(cli, tmp_path, "  gpus: [0, 1, 2]\n")
    assert "#SBATCH --gpus-per-node=3\n" in script and "for its 3 local process(es)" in script


def test_node_commands_count_the_configs_gpus(tmp_path, cli):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: job\nlayout:\n  nnodes: 2\n  gpus: 8\n")
    r = cli("train", str(cfg), "--print-node-commands")
    assert r.returncode == 0, r.stderr
    assert "# 2 node(s) x 8 process(es)" in r.stdout
    assert f"tunewiz train {shlex.quote(str(cfg))} --node-rank 1" in r.stdout


def test_launching_here_still_checks_this_machine(tmp_path, cli):
    # The same config, started on this machine, is refused here: no GPU is visible.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: job\noutput_dir: {tmp_path / 'runs'}\nlayout:\n  gpus: 8\n  deepspeed: zero2\n")
    r = cli("train", str(cfg))
    assert r.returncode == 1
    assert "layout.deepspeed: zero2 needs CUDA GPUs and none is visible" in r.stderr
    assert "Traceback" not in r.stderr
