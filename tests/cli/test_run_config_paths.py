"""A run's config is self-contained: relative paths mean the directory `tunewiz train` ran
in, and the run keeps them absolute, so `--resume` and `convert` from anywhere else read
the same model and data."""

from __future__ import annotations

import json

import yaml

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.config import load_config
from tunewiz.engine.contract.events import read_events


def test_resume_and_convert_from_another_directory(tiny_model, tmp_path, cli):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "model").symlink_to(tiny_model)
    rec = {"conversation": [{"input": "Who are you?", "output": "I am the assistant."}]}
    (project / "d.jsonl").write_text("".join(json.dumps(rec) + "\n" for _ in range(8)))
    (project / "c.yaml").write_text(yaml.safe_dump({
        "name": "rel", "output_dir": "runs", "model": {"path": "model"}, "method": "lora",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "data": {"files": ["d.jsonl"], "max_length": 64, "num_proc": 1},
        "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "lr": 1e-2, "save_every": 1,
                  "gradient_checkpointing": False, "warmup_ratio": 0.0},
        "eval": {"inputs": ["Who?"], "every": 0, "max_new_tokens": 2}}))
    r = cli("train", "c.yaml", cwd=project)
    assert r.returncode == 0, r.stderr[-2000:]
    [run] = rundir.list_runs(project / "runs")
    own = load_config(run / rundir.CONFIG)
    assert own.data.files == [str(project / "d.jsonl")] and own.model.path == str(project / "model")
    assert own.output_dir == str(project / "runs")

    r = cli("train", str(run), "--resume", cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [e["status"] for e in read_events(run / rundir.EVENTS) if e["type"] == "done"][-1] == "completed"
    r = cli("convert", str(run), str(elsewhere / "adapter"), cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (elsewhere / "adapter" / "adapter_config.json").is_file()
    assert not list(elsewhere.glob("runs")) and not (elsewhere / "d.jsonl").exists()
