"""A fresh GPU box without bitsandbytes / deepspeed / torchao hears it at launch, before anything slow."""

import os
import subprocess
import sys

from support.hidden_packages import hiding
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
                       layout={"gpus": 1, "deepspeed": "zero2"}, train__float8=True)
    # Missing on this machine whatever it has (a GPU machine's `make setup` installs both).
    env = hiding(tmp_path / "hidden", ["bitsandbytes", "deepspeed", "torchao"], _fake_gpu_machine(tmp_path))
    r = subprocess.run([sys.executable, "-m", "tunewiz", "train", str(cfg)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "bitsandbytes (for method: qlora" in lines[0] and "deepspeed (for layout.deepspeed: zero2)" in lines[0]
    assert "torchao (for train.float8: true)" in lines[0]
    assert "pip install bitsandbytes deepspeed torchao" in lines[0] and str(cfg) in lines[0]
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


def test_qlora_without_cuda_still_says_cuda_first(tmp_path, tiny_model, cli):
    """No GPU at all: the package is not the problem, the missing GPU is."""
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), method="qlora")
    r = cli("train", str(cfg), env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 1
    assert "QLoRA needs a CUDA GPU" in r.stderr and "bitsandbytes" not in r.stderr.splitlines()[-1]


def test_a_hidden_package_is_missing_even_where_it_is_installed(tmp_path):
    """What the test above relies on, on a package every machine has (PyYAML)."""
    env = hiding(tmp_path / "hidden", ["yaml"])
    probe = ("from tunewiz.engine.contract.optional_packages import _installed\n"
             "print(_installed('yaml'), _installed('json'))\n"
             "import yaml.constructor\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split() == ["False", "True"], r.stdout + r.stderr
    assert r.returncode == 1 and "No module named 'yaml'" in r.stderr
