"""Run directories written by hand from lists of events, as the engine leaves them: what the
TUI tests show without training anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tunewiz.engine.contract.config import Config, dump_yaml

T0 = 1_763_800_000.0  # a fixed time, so the "started" column never changes


def recorded_run(root: Path, name: str, stamp: str, events: list[dict], state: dict | None = None) -> Path:
    """A run directory as the engine leaves it, written from a list of events."""
    run = root / f"{name}-{stamp}"
    (run / "logs").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(Config(name=name, output_dir=str(root))))
    (run / "events.jsonl").write_text("".join(json.dumps({"v": 1, **e}) + "\n" for e in events))
    (run / "state.json").write_text(json.dumps(state or {}))
    return run


def step(i: int, total: int, loss: float) -> dict:
    return {"t": T0 + i, "type": "step", "step": i, "total": total, "epoch": i / total, "loss": loss,
            "lr": 2e-4, "grad_norm": 1.0, "tokens_per_s": 1200.0, "mem_gib": 1.5, "eta_s": (total - i) * 2.0}


def sample_runs(root: Path) -> dict[str, Path]:
    """Two finished runs: `done` (completed, with an eval answer) and `failed` (a data error)."""
    start = {"t": T0, "type": "start", "name": "x", "config": {}, "world_size": 1, "total_steps": 40,
             "model": "demo", "params": 1, "trainable_params": 1}
    done = recorded_run(root, "assistant", "20251122-080000",
                        [start, *[step(i, 40, 2.0 / i) for i in range(1, 41)],
                         {"t": T0 + 41, "type": "eval", "step": 40,
                          "samples": [{"input": "Please introduce yourself", "output": "I am Alice's assistant."}]},
                         {"t": T0 + 42, "type": "done", "status": "completed", "path": "checkpoints/step-40"}],
                        {"status": "completed"})
    failed = recorded_run(root, "pretrain", "20251122-070000",
                          [start, step(1, 40, 3.1),
                           {"t": T0 + 2, "type": "error", "kind": "data", "msg": "data/x.jsonl:7: no text",
                            "hint": "fix the record"},
                           {"t": T0 + 3, "type": "done", "status": "failed", "path": None}],
                          {"status": "failed"})
    os.utime(failed, (T0, T0))
    os.utime(done, (T0 + 100, T0 + 100))
    return {"done": done, "failed": failed}
