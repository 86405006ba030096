"""Saving and restoring training state under ``<run>/checkpoints/step-N/``.

A checkpoint holds the trainable weights in Hugging Face / peft ``save_pretrained``
format (so convert needs no tunewiz-specific reader), the optimizer, scheduler and RNG
states, and ``trainer_state.json`` written last as the marker of a complete checkpoint.
It is written into ``step-N.tmp`` and renamed, so a kill mid-save never leaves a
checkpoint that looks complete.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from . import rundir

STATE_FILE = "trainer_state.json"


def save(run: Path, step: int, model, optimizer, scheduler, extra: dict, keep: int) -> Path:
    import torch

    root = Path(run) / rundir.CHECKPOINTS
    final = root / f"step-{step}"
    tmp = root / f"step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, **extra}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    _rotate(run, keep)
    return final


def _rotate(run: Path, keep: int) -> None:
    for old in rundir.checkpoints(run)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def load_trainer_state(ckpt: Path) -> dict:
    return json.loads((ckpt / STATE_FILE).read_text())


def restore(ckpt: Path, model, optimizer, scheduler, method: str) -> dict:
    """Load weights, optimizer, scheduler and RNG from a checkpoint into live objects."""
    import torch
    from safetensors.torch import load_file

    if method == "full":
        state = {}
        for f in sorted(ckpt.glob("model*.safetensors")):
            state.update(load_file(f))
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Tied weights (lm_head = embed) are saved once; anything else missing is a bug.
        missing = [k for k in missing if "lm_head" not in k]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint {ckpt} does not match the model: {missing[:3]} {unexpected[:3]}")
    else:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(ckpt / "adapter_model.safetensors"))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    _set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
    return load_trainer_state(ckpt)


def _rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
