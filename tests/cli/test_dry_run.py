"""`tunewiz train CONFIG --dry-run`: the plan and the memory check, with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

SHAPE_1_8B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=16,
                  num_key_value_heads=8, vocab_size=92544)
# Far beyond any machine's RAM or GPU, whatever the settings.
SHAPE_HUGE = dict(hidden_size=65536, intermediate_size=262144, num_hidden_layers=200, num_attention_heads=512,
                  num_key_value_heads=64, vocab_size=256000)
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}     # set but empty: no GPU is visible, as CUDA reads it


def model_folder(root: Path, shape: dict) -> Path:
    """Only a config.json: all a dry run reads of the model."""
    folder = root / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16", **shape}))
    return folder


def write_config(root: Path, model: Path | str, **train) -> Path:
    rec = {"conversation": [{"input": "Who are you?", "output": "I am the assistant."}]}
    (root / "d.jsonl").write_text("".join(json.dumps(rec) + "\n" for _ in range(100)))
    method = train.pop("method", "lora")
    deepspeed = train.pop("deepspeed", "none")
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "dry", "output_dir": str(root / "runs"), "model": {"path": str(model)}, "method": method,
        "data": {"files": ["d.jsonl"], "max_length": 2048, "cache_dir": str(root / "cache")},
        "train": {"batch_size": 1, "gradient_checkpointing": True, **train},
        "layout": {"deepspeed": deepspeed}}, sort_keys=False))
    return config


def assert_nothing_written(root: Path) -> None:
    assert not (root / "runs").exists() and not (root / "cache").exists()


def test_a_run_that_fits_prints_the_plan_and_writes_nothing(cli, tmp_path):
    config = write_config(tmp_path, model_folder(tmp_path, SHAPE_1_8B), batch_size=4, gradient_checkpointing=False)
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "80", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "lora, sft, batch 4 x 2048 tokens" in out and "gradient checkpointing off" in out
    assert "1 process(es), GPU 0; no DeepSpeed" in out
    assert "llama, 1.9B parameters" in out
    memory = next(line for line in out.splitlines() if line.startswith("memory"))
    gib = float(memory.split("≈ ")[1].split(" GiB")[0])
    assert 22 < gib < 30, memory          # one H200 measured 26.1 GiB for this run
    assert "per GPU" in memory and "a 80 GiB GPU (--gpu-memory) has 80.0 GiB" in memory
    assert "tokenized cache" in out and r.stdout.rstrip().endswith("without --dry-run")
    assert_nothing_written(tmp_path)
    # A run directory stands for its own config (what --resume would train).
    run = tmp_path / "a-run"
    run.mkdir()
    (run / "config.yaml").write_text(config.read_text())
    again = cli("train", str(run), "--dry-run", "--resume", "--gpu-memory", "80", cwd=tmp_path, env=NO_GPU)
    assert again.returncode == 0, again.stderr
    assert f"config  {run / 'config.yaml'}: lora" in again.stdout and memory in again.stdout
    assert_nothing_written(tmp_path)
    assert [p.name for p in run.iterdir()] == ["config.yaml"]


def batch_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("batch   "))


def test_the_dry_run_shows_what_auto_batch_picks_for_the_gpu(cli, tmp_path):
    """The choice the run itself makes when it starts (contract.auto_batch.choose)."""
    folder = model_folder(tmp_path, SHAPE_1_8B)
    # The presets' 1 x 16 with checkpointing on an 80 GiB GPU: 4 x 2,048 tokens saturate it.
    config = write_config(tmp_path, folder, batch_size=1, grad_accum=16, gradient_checkpointing=True)
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "80", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    line = batch_line(r.stdout)
    assert line.startswith("batch   train.auto_batch: regroups to micro-batch 4 x grad_accum 4, checkpointing off "
                           "(config: micro-batch 1 x grad_accum 16, checkpointing on): peak ≈ "), line
    peak = float(line.split("peak ≈ ")[1].split(" GiB")[0])
    assert 22 < peak < 30, line           # one H200 measured 26.1 GiB for 4 x 2,048 (docs/memory.md)
    assert "GiB free" in line and "train.auto_batch: false keeps the config's" in line
    # A 16 GiB GPU: 4 rows fit only with checkpointing, and train faster than 1 row without.
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "16", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    assert "regroups to micro-batch 4 x grad_accum 4, checkpointing on (config:" in batch_line(r.stdout)
    # Already the fastest that fits: kept as written.
    config = write_config(tmp_path, folder, batch_size=4, grad_accum=1, gradient_checkpointing=False)
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "80", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    assert batch_line(r.stdout).startswith("batch   train.auto_batch: keeps micro-batch 4 x grad_accum 1, "
                                           "checkpointing off, as written (nothing faster fits): peak ≈ ")
    # And where it does not regroup at all, it says why.
    for train, args, why in [({"auto_batch": False}, ["--gpu-memory", "80"], "train.auto_batch is false"),
                             ({"deepspeed": "zero2"}, ["--gpu-memory", "80"], "not under DeepSpeed"),
                             ({}, [], "not on a CPU")]:
        config = write_config(tmp_path, folder, batch_size=1, grad_accum=16, **train)
        r = cli("train", str(config), "--dry-run", *args, cwd=tmp_path, env=NO_GPU)
        assert r.returncode == 0, r.stderr
        line = batch_line(r.stdout)
        assert line.startswith(f"batch   train.auto_batch: no regrouping ({why}"), line
        assert line.endswith("micro-batch 1 x grad_accum 16, checkpointing on, as written"), line
    assert_nothing_written(tmp_path)


def test_a_run_that_does_not_fit_names_the_setting_to_change(cli, tmp_path):
    config = write_config(tmp_path, model_folder(tmp_path, SHAPE_1_8B), batch_size=8, gradient_checkpointing=False,
                          auto_batch=False)
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "40", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    # Where the first setting to change is, what is short, and the two gentlest fixes.
    lines = config.read_text().splitlines()
    ckpt_line = 1 + next(i for i, text in enumerate(lines) if "gradient_checkpointing" in text)
    assert line.startswith(f"tunewiz: error: {config}:{ckpt_line}: needs ≈ "), line
    assert "GiB per GPU and a 40 GiB GPU (--gpu-memory) has 40.0 GiB" in line
    assert line.endswith("(set train.gradient_checkpointing: true or lower train.batch_size to 4 "
                         "(and train.grad_accum to 32 for the same batch))"), line
    assert "Traceback" not in r.stderr and "memory  ≈" in r.stdout
    assert_nothing_written(tmp_path)
    # The fix it names fits.
    fixed = yaml.safe_load(config.read_text())
    fixed["train"]["gradient_checkpointing"] = True
    config.write_text(yaml.safe_dump(fixed))
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "40", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr


def test_a_run_that_fits_only_as_auto_batch_regroups_it_is_not_refused(cli, tmp_path):
    """The run makes the same choice when it starts, so the dry run checks what will train."""
    folder = model_folder(tmp_path, SHAPE_1_8B)
    config = write_config(tmp_path, folder, batch_size=8, gradient_checkpointing=False)
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "40", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    assert "regroups to micro-batch" in batch_line(r.stdout)
    fits = next(line for line in r.stdout.splitlines() if line.startswith("fits    "))
    assert fits.startswith("fits    as train.auto_batch regroups it (the batch line above); nothing was written")
    assert_nothing_written(tmp_path)
    # Nothing it could regroup to fits: still refused, with the setting to change.
    config = write_config(tmp_path, folder, batch_size=8, gradient_checkpointing=False)
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "4", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 1 and "needs ≈ " in r.stderr and "Traceback" not in r.stderr


def test_a_cpu_run_is_checked_against_this_machines_ram(cli, tmp_path):
    config = write_config(tmp_path, model_folder(tmp_path, SHAPE_HUGE), method="full")
    r = cli("train", str(config), "--dry-run", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert "GiB of RAM and this machine's RAM has" in line and "no single setting makes it fit" in line
    assert "on the CPU (fp32)" in r.stdout and "of RAM (CPU training, fp32)" in r.stdout
    assert_nothing_written(tmp_path)


def test_the_demo_preset_fits_a_cpu_without_converting_the_demo(cli, tmp_path):
    preset = Path(__file__).resolve().parents[2] / "presets" / "demo-assistant.yaml"
    r = cli("train", str(preset), "--dry-run", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    memory = next(line for line in r.stdout.splitlines() if line.startswith("memory"))
    assert "of RAM" in memory and "this machine's RAM has" in memory
    assert not (tmp_path / "work_dirs").exists()


def test_qlora_without_a_gpu_and_stray_flags_are_one_line_errors(cli, tmp_path):
    config = write_config(tmp_path, model_folder(tmp_path, SHAPE_1_8B), method="qlora")
    r = cli("train", str(config), "--dry-run", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "method: qlora needs a CUDA GPU and none is visible (set method: lora on this machine" in r.stderr
    # Planning for GPUs elsewhere (a login node): the same config is checked against their size.
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "24", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    r = cli("train", str(config), "--gpu-memory", "24", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 1 and "--gpu-memory applies to --dry-run only" in r.stderr
    assert_nothing_written(tmp_path)


def test_zero3_over_the_gpus_of_the_config_on_a_login_node(cli, tmp_path):
    """layout.gpus: 4 on a machine without GPUs plans for 4 GPUs; ZeRO-3 divides the states."""
    folder = model_folder(tmp_path, SHAPE_1_8B)
    config = write_config(tmp_path, folder, method="full", deepspeed="zero3")
    data = yaml.safe_load(config.read_text())
    data["layout"]["gpus"] = 4
    config.write_text(yaml.safe_dump(data))
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "16", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    assert "4 process(es), GPU 0, 1, 2, 3; DeepSpeed zero3; world size 4" in r.stdout
    # Without a size to check against, the plan and the estimate still print.
    r = cli("train", str(config), "--dry-run", cwd=tmp_path, env=NO_GPU)
    assert r.returncode == 0, r.stderr
    assert "GPU memory unknown here" in r.stdout and "--gpu-memory GIB checks the fit" in r.stdout
    data["layout"]["deepspeed"] = "none"
    config.write_text(yaml.safe_dump(data))
    r = cli("train", str(config), "--dry-run", cwd=tmp_path, env=NO_GPU)
    assert "no regrouping (the GPU's memory is not known here; --gpu-memory GIB shows its choice)" in r.stdout
    data["layout"]["deepspeed"] = "none"
    config.write_text(yaml.safe_dump(data))
    r = cli("train", str(config), "--dry-run", "--gpu-memory", "16", cwd=tmp_path, env=NO_GPU)
    # Without DeepSpeed every GPU holds all the states (and DDP a second copy of the grads).
    assert r.returncode == 1 and "(set layout.deepspeed: zero2" in r.stderr, r.stderr


def test_a_model_not_downloaded_yet_leaves_the_memory_unknown(cli, tmp_path):
    config = write_config(tmp_path, "nobody-here/no-such-model-xyz")
    r = cli("train", str(config), "--dry-run", cwd=tmp_path, env={**NO_GPU, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert "not in the Hugging Face cache yet" in r.stdout and "memory  unknown" in r.stdout


def test_a_dry_run_imports_no_torch(tmp_path):
    config = write_config(tmp_path, model_folder(tmp_path, SHAPE_1_8B))
    code = ("import sys; from tunewiz.cli import main\n"
            f"code = main(['train', {str(config)!r}, '--dry-run', '--gpu-memory', '80'])\n"
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
            "print('BAD', bad, file=sys.stderr) if bad else None; sys.exit(1 if bad or code else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={**__import__("os").environ, **NO_GPU, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "memory  ≈" in r.stdout
