"""Saving and restoring training state under ``<run>/checkpoints/step-N/``.

A checkpoint holds the trainable weights in Hugging Face / peft ``save_pretrained``
format (so convert needs no tunewiz-specific reader; under ZeRO-3 DeepSpeed's sharded
state instead, which convert gathers), the optimizer and scheduler states, each rank's
RNG state, and ``trainer_state.json`` written last as the marker of a complete
checkpoint. Every rank writes into ``step-N.tmp``; rank 0 renames it once all are done,
so a kill mid-save never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from . import rundir

STATE_FILE = "trainer_state.json"


def save(run: Path, step: int, backend, rt, extra: dict, keep: int) -> Path:
    root = Path(run) / rundir.CHECKPOINTS
    final, tmp = root / f"step-{step}", root / f"step-{step}.tmp"
    if rt.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    rt.barrier()
    backend.save(tmp)
    rt.barrier()
    if rt.is_main:
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, "world_size": rt.world_size, **extra}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        _rotate(run, keep)
    rt.barrier()
    return final


def _rotate(run: Path, keep: int) -> None:
    for old in rundir.checkpoints(run)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def load_trainer_state(ckpt: Path) -> dict:
    return json.loads((ckpt / STATE_FILE).read_text())


def load_weights(ckpt: Path, model, method: str) -> None:
    """Weights saved by save_pretrained back into a live (peft or full) model."""
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


def save_rng(tmp: Path, rank: int) -> None:
    """Each rank's RNG (dropout masks differ per rank), so a resumed run draws the same."""
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    torch.save(state, tmp / f"rng-rank{rank}.pt")


def load_rng(ckpt: Path, rank: int) -> None:
    import torch

    path = ckpt / f"rng-rank{rank}.pt"
    if not path.exists():  # resumed on more ranks than saved: new ranks start fresh
        return
    state = torch.load(path, weights_only=False)
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
