"""Real runs of the tiny model through the CLI: their data, their config, and how a test
reads what they left (the run directory, the losses, a one-line user error)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import read_events

IDENTITY = "I am Ada's assistant."


def write_data(path: Path, n: int = 8) -> Path:
    recs = [{"conversation": [{"input": "Who are you?", "output": IDENTITY}]} for _ in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def write_config(tmp: Path, model: Path, data: Path, **over) -> Path:
    """A small LoRA config in `tmp`; `section__key=value` overrides one key, `section=...` a
    whole section."""
    cfg = {
        "name": "t", "output_dir": str(tmp / "runs"), "model": {"path": str(model)},
        "method": "lora", "stage": "sft",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "data": {"files": [str(data)], "max_length": 64, "pack": True},
        "train": {"max_steps": 6, "batch_size": 2, "grad_accum": 2, "lr": 1e-2, "save_every": 3,
                  "gradient_checkpointing": False, "warmup_ratio": 0.0},
        "eval": {"inputs": ["Who are you?"], "every": 3, "max_new_tokens": 8},
    }
    for key, value in over.items():
        section, _, leaf = key.partition("__")
        if leaf:
            cfg.setdefault(section, {})[leaf] = value
        else:
            cfg[section] = value
    p = tmp / "config.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def only_run(tmp: Path) -> Path:
    runs = rundir.list_runs(tmp / "runs")
    assert len(runs) == 1, runs
    return runs[0]


def losses(run: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_events(run / "events.jsonl") if e["type"] == "step"}


def wait_until(pred, timeout=120.0) -> bool:
    """Poll a condition on files or processes (never a fixed sleep); False if it never held."""
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def assert_user_error(r, needle: str) -> None:
    """Exit 1 and exactly one `tunewiz: error:` line holding `needle` (other chatter allowed)."""
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("tunewiz: error:")]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def one_line_error(r: subprocess.CompletedProcess, *words: str, alone: bool = True) -> str:
    """The CLI failed the way a user error must: exit 1, one line, no traceback, holding every
    one of `words`. `alone`: nothing else on stderr (a run that got as far as loading its
    libraries has their chatter)."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if not alone:
        lines = [ln for ln in lines if ln.startswith("tunewiz: ")]
    assert len(lines) == 1 and lines[0].startswith("tunewiz: error: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]
