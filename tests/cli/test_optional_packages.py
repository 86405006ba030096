"""A fresh GPU box without bitsandbytes / deepspeed hears it at launch, before anything slow."""

import os
import subprocess
import sys

from support.runs import write_config, write_data


def _fake_gpu_machine(tmp_path) -> dict:
    """An nvidia-smi that reports one GPU: the launcher plans a CUDA layout as on a GPU box."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    uuid = "GPU-00000000-0000-0000-0000-000000000000"
    smi.write_text("#!/bin/sh\ncase \"$*\" in\n"
                   f"  *--query-gpu*) echo '0, {uuid}, NVIDIA H200, 143771, 0' ;;\n"
                   f"  *) echo 'GPU 0: NVIDIA H200 (UUID: {uuid})' ;;\nesac\n")
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    return env


def test_every_missing_package_is_named_with_one_install_command(tmp_path, tiny_model):
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), method="qlora",
                       layout={"gpus": 1, "deepspeed": "zero2"})
    r = subprocess.run([sys.executable, "-m", "tunewiz", "train", str(cfg)], capture_output=True, text=True,
                       env=_fake_gpu_machine(tmp_path), timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "bitsandbytes (for method: qlora" in lines[0] and "deepspeed (for layout.deepspeed: zero2)" in lines[0]
    assert "pip install bitsandbytes deepspeed" in lines[0] and str(cfg) in lines[0]
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


def test_qlora_without_cuda_still_says_cuda_first(tmp_path, tiny_model, cli):
    """No GPU at all: the package is not the problem, the missing GPU is."""
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), method="qlora")
    r = cli("train", str(cfg), env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 1
    assert "QLoRA needs a CUDA GPU" in r.stderr and "bitsandbytes" not in r.stderr.splitlines()[-1]
