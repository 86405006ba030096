"""``tunewiz convert RUN|CHECKPOINT OUT``: a training checkpoint -> a clean Hugging Face folder.

Checkpoints already hold the weights in HF / peft ``save_pretrained`` format, so for
LoRA / QLoRA the adapter files are copied as they are (any peft user can load them), and
for full fine-tuning the weights are copied. Either way the tokenizer (with the chat
template it was trained with, loadable by transformers 4.x and 5.x) and a README.md model
card go beside them, and the adapter's config names the base by its hub id when it has one
(peft records the folder it was loaded from, which for a hub model is a snapshot inside the
Hugging Face cache). The optimizer, scheduler and RNG states stay behind. ``tunewiz.json``
records what the folder is (base model, method, stage, template, system, step, source) so
merge and chat can pick the right base and template without being told again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from .contract import model_card, rundir
from .contract.config import ADAPTER_METHODS, load_config
from .contract.errors import ConfigError, ModelError
from .contract.output_folder import atomic_folder, disk_full, is_disk_full
from .zero_gather import gather_zero3, is_zero3

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
FULL_CONFIG_FILES = ("config.json", "generation_config.json")
TRAINER_STATE = rundir.MARKER   # a checkpoint folder holds it

Say = Callable[[str], None]


def find_checkpoint(src: Path) -> tuple[Path, Path]:
    """(run directory, checkpoint folder) for a run (its newest complete checkpoint) or a checkpoint."""
    src = Path(src)
    if not src.exists():
        raise ModelError(f"{src} does not exist", "give a run directory or one of its checkpoints/step-N folders")
    if (src / TRAINER_STATE).is_file():
        return src.parent.parent, src
    if (src / rundir.CONFIG).is_file():
        found = rundir.checkpoints(src)
        if not found:
            raise ModelError(f"{src} has no complete checkpoint yet",
                             "wait for the first checkpoint (train.save_every), or stop the run to save one")
        return src, found[-1]
    raise ModelError(f"{src} is neither a run directory nor a checkpoint",
                     "a run holds config.yaml; a checkpoint holds trainer_state.json")


def _base_model_ref(path: str, run: Path) -> str:
    """The config's model path as something that still works from elsewhere: "demo", or absolute."""
    if path == "demo":
        return path
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() else path


def describe(run: Path, ckpt: Path) -> dict:
    """The tunewiz.json content for this checkpoint."""
    cfg_file = run / rundir.CONFIG
    if not cfg_file.is_file():
        raise ConfigError(f"{ckpt} is not inside a run directory (no {cfg_file})",
                          "convert needs the run's config.yaml to know the base model and template")
    cfg = load_config(cfg_file)
    try:
        step = int(json.loads((ckpt / TRAINER_STATE).read_text()).get("step", 0))
    except (OSError, ValueError):
        step = int(ckpt.name.rsplit("-", 1)[-1]) if ckpt.name.rsplit("-", 1)[-1].isdigit() else 0
    return {"base_model": _base_model_ref(cfg.model.path, run), "method": cfg.method, "stage": cfg.stage,
            "template": cfg.data.template, "system": cfg.data.system, "step": step,
            "source": str(ckpt.resolve()), "run": str(run.resolve())}


def _full_weight_files(ckpt: Path) -> list[Path]:
    return sorted(ckpt.glob("model*.safetensors")) + sorted(ckpt.glob("model.safetensors.index.json"))


def _check_files(ckpt: Path, method: str) -> list[Path]:
    """The weight files to copy; a clear error when the checkpoint lacks them."""
    if method in ADAPTER_METHODS:
        missing = [f for f in ADAPTER_FILES if not (ckpt / f).is_file()]
        if missing:
            raise ModelError(f"{ckpt} lacks {', '.join(missing)} (method {method})",
                             "the checkpoint is incomplete or from another tool; try an older step-N")
        return [ckpt / f for f in ADAPTER_FILES]
    files = _full_weight_files(ckpt)
    if not any(f.suffix == ".safetensors" for f in files) or not (ckpt / "config.json").is_file():
        raise ModelError(f"{ckpt} lacks model*.safetensors or config.json (method full)",
                         "the checkpoint is incomplete or from another tool; try an older step-N")
    return files + [ckpt / f for f in FULL_CONFIG_FILES if (ckpt / f).is_file()]


def _check_safetensors(path: Path) -> None:
    """Read the header so a truncated file is caught here, not at load time."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise ModelError(f"{path}: damaged weights file ({e})", "try an older checkpoint") from None


def _copy_tokenizer(ckpt: Path, meta: dict, dest: Path, say: Say) -> bool:
    """The checkpoint's tokenizer if it saved one, else the base model's (True: with the chat
    template training used)."""
    from .models import load_tokenizer, resolve_model_path
    from .saved_tokenizer import save_tokenizer

    has_own = (ckpt / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(ckpt if has_own else resolve_model_path(meta["base_model"]))
    return save_tokenizer(tokenizer, dest, meta.get("template"), meta.get("system") or "",
                          lambda m: say(f"convert: {m}"))


def _weights_dir(run: Path, ckpt: Path, say: Say) -> Path:
    """Where the save_pretrained weights are: the checkpoint, or its gathered ZeRO-3 shards
    (gathered once, into a temp folder renamed when complete; later converts reuse it)."""
    if not is_zero3(ckpt):
        return ckpt
    gathered = ckpt / "gathered"
    if not gathered.is_dir():
        tmp = ckpt / "gathered.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            gather_zero3(ckpt, load_config(run / rundir.CONFIG), tmp, say)
        except Exception as e:
            if is_disk_full(e):
                shutil.rmtree(tmp, ignore_errors=True)
                raise disk_full(gathered) from None
            raise
        tmp.rename(gathered)
    return gathered


def convert_checkpoint(src: Path, out: Path, say: Say = print) -> Path:
    """Write the HF folder for src (run or checkpoint) to out; returns out."""
    run, ckpt = find_checkpoint(Path(src))
    meta = describe(run, ckpt)
    files = _check_files(_weights_dir(run, ckpt, say), meta["method"])
    for f in files:
        if f.suffix == ".safetensors":
            _check_safetensors(f)
    out = Path(out)
    kind = "adapter" if meta["method"] in ADAPTER_METHODS else "full model"
    say(f"convert: {ckpt} (step {meta['step']}, {meta['method']}) -> {kind} in {out}")

    # Only an earlier convert of this same run may be replaced (check_replaceable says why not).
    identity = {"run": meta["run"], "method": meta["method"]}
    with atomic_folder(out, "convert", identity, meta) as tmp:
        for f in files:
            shutil.copy2(f, tmp / f.name)
        if meta["method"] != "full":
            model_card.name_adapter_base(tmp / "adapter_config.json", meta["base_model"])
        say("convert: adding the tokenizer and a model card (README.md)")
        try:
            same_template = _copy_tokenizer(ckpt, meta, tmp, say)
        except ModelError as e:
            if meta["method"] == "full":  # a model folder without its tokenizer is no model
                raise
            # The adapter is whole without it: merge and chat take the base's tokenizer.
            say(f"convert: note: no tokenizer in the adapter folder ({e})")
            same_template = None
        model_card.write(tmp, "full" if meta["method"] == "full" else "adapter", meta, out.absolute(),
                         same_template)
    say(f"convert: done -> {out}")
    return out
