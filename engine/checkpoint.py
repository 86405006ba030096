"""Saving and restoring training state under ``<run>/checkpoints/step-N/``.

A checkpoint holds the trainable weights in Hugging Face / peft ``save_pretrained``
format (so convert needs no tunewiz-specific reader; under ZeRO-3 DeepSpeed's sharded
state instead, which convert gathers), the optimizer and scheduler states, each rank's
RNG state, and ``trainer_state.json`` written last as the marker of a complete
checkpoint.

Whole or not listed, through a kill at any point: every rank writes into ``step-N.tmp``
and rank 0 renames it into place once all are done; a checkpoint leaves by a rename to
``step-N.old`` before anything in it is deleted. Both suffixes are never listed
(rundir.checkpoints) and the next writer removes them (rundir.clean_stale). A full disk
is a DiskFullError naming the folder, with the half-written one removed.

The states are loaded with ``torch.load(weights_only=True)``: tensors and plain
containers only, so a file planted in a run directory cannot run code. DeepSpeed loads its
own states with full pickle, so its files are first checked to build nothing but its own
classes and plain types (check_no_code).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

from .contract import faults, model_card, rundir
from .contract.errors import DiskFullError, TunewizError, is_disk_full

STATE_FILE = rundir.MARKER


class CheckpointError(TunewizError):
    """A checkpoint file that cannot be loaded as plain data."""

    kind = "checkpoint"


def save(run: Path, step: int, backend, rt, extra: dict, keep: int) -> Path:
    final = rundir.checkpoint_dir(run, step)
    root, tmp = final.parent, final.with_name(final.name + rundir.WRITING)
    try:
        if rt.is_main:
            _remove(tmp)
            tmp.mkdir(parents=True)
            faults.point("ckpt.tmp")
        rt.barrier()
        backend.save(tmp)
        rt.barrier()
        if rt.is_main:
            if (tmp / "adapter_config.json").is_file():  # a hub base by its id, not its cache folder
                model_card.name_adapter_base(tmp / "adapter_config.json")
            (tmp / STATE_FILE).write_text(json.dumps({"step": step, "world_size": rt.world_size, **extra}, indent=2))
            faults.point("ckpt.marker")
            if final.exists():  # the same step saved again: the old one leaves before the new one enters
                _retire(final)
            tmp.rename(final)
            faults.point("ckpt.renamed")
            _rotate(run, keep)
    except BaseException as e:
        if rt.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        if (is_disk_full(e) or _nearly_full(root)) and not isinstance(e, (DiskFullError, KeyboardInterrupt)):
            raise DiskFullError(
                f"no space left on the device while writing checkpoint {tmp}",
                f"free space on the disk holding {root} (`df -h {root}`) or keep fewer checkpoints "
                f"(train.save_total_limit), then `tunewiz train {run} --resume`") from None
        raise
    rt.barrier()
    return final


def save_state(obj, path: Path) -> None:
    """torch.save through a Python file, so a full disk surfaces as ENOSPC (torch's own
    file writer reports only "unexpected pos")."""
    import torch

    with open(path, "wb") as f:
        torch.save(obj, f)


def _nearly_full(root: Path) -> bool:
    """A write failed with the disk all but full: some writers keep no errno at all."""
    try:
        return shutil.disk_usage(root).free < 1 << 20
    except OSError:
        return False


def _rotate(run: Path, keep: int) -> None:
    for old in rundir.checkpoints(run)[:-keep] if keep > 0 else []:
        _retire(old)


def _retire(ckpt: Path) -> None:
    """Unlist first (one atomic rename), then delete: a kill in between leaves step-N.old,
    which is never listed and is removed at the next start."""
    old = ckpt.with_name(ckpt.name + rundir.RETIRING)
    _remove(old)
    ckpt.rename(old)
    faults.point("rotate.renamed")
    _remove(old)


def _remove(path: Path) -> None:
    if not path.exists():
        return
    for i, f in enumerate(sorted(path.rglob("*"), reverse=True)):
        if i == 1:
            faults.point("rotate.deleting")  # some files gone, some left
        if f.is_dir() and not f.is_symlink():
            f.rmdir()
        else:
            f.unlink(missing_ok=True)
    path.rmdir()


def load_trainer_state(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / STATE_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{ckpt / STATE_FILE} cannot be read ({e})",
                              f"move {ckpt} aside to resume from the checkpoint before it") from None


def load_state(path: Path, **kw):
    """torch.load for tensors and plain containers only: a pickle that would build any other
    object (and so could run code) is refused with a CheckpointError, never executed."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True, **kw)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
        # torch's own text advises weights_only=False, the one thing never to do here
        found = re.search(r"unsupported GLOBAL:? (\S+)", str(e), re.IGNORECASE)
        what = f"it would build {found.group(1)}, which could run code" if found else "it is damaged"
        raise CheckpointError(f"{path} is not a plain tensor file ({what}): not loaded",
                              f"move {path.parent} aside to resume from the checkpoint before it") from None


def check_no_code(folder: Path, library: str = "deepspeed") -> None:
    """For state files that another library loads with full pickle (DeepSpeed's own
    load_checkpoint): before it does, every global each file would build must be a class of
    that library or a plain type. Anything else (a function such as os.system, eval or
    subprocess.Popen) is refused: the file is never unpickled."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    for f in sorted(Path(folder).rglob("*.pt")):
        try:
            names = get_unsafe_globals_in_checkpoint(f)
        except Exception as e:  # noqa: BLE001 - not a torch file at all: damaged
            raise CheckpointError(f"{f} is not a plain tensor file (it is damaged: {type(e).__name__}): not loaded",
                                  f"move {folder} aside to resume from the checkpoint before it") from None
        bad = [n for n in names if not _library_class(n, library)]
        if bad:
            raise CheckpointError(f"{f} is not a plain tensor file (it would build {bad[0]}, which could run code): "
                                  "not loaded", f"move {folder} aside to resume from the checkpoint before it")


def _library_class(name: str, library: str) -> bool:
    """A class (not a function) defined in `library`: what a checkpoint of it may build."""
    import importlib

    module, _, attr = name.rpartition(".")
    if name in _PLAIN_TYPES:
        return True
    if not (module == library or module.startswith(library + ".")):
        return False
    try:
        obj = getattr(importlib.import_module(module), attr)
    except Exception:  # noqa: BLE001 - no such module or name: not one of its classes
        return False
    return isinstance(obj, type)


# Plain types torch's weights_only loader does not take but DeepSpeed's states may hold
# (sets of names, a saved argparse namespace, numpy arrays and scalars).
_PLAIN_TYPES = {"builtins.set", "builtins.frozenset", "builtins.slice", "argparse.Namespace",
                "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
                "numpy._core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
                "numpy._core.multiarray.scalar"}


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
    save_state(state, tmp / f"rng-rank{rank}.pt")
    faults.point("ckpt.rng")


def load_rng(ckpt: Path, rank: int) -> None:
    import torch

    path = ckpt / f"rng-rank{rank}.pt"
    if not path.exists():  # resumed on more ranks than saved: new ranks start fresh
        return
    state = load_state(path)
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
