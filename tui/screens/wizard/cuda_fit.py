"""Whether a recipe can train on this machine's GPUs: QLoRA's 4-bit kernels exist only on
CUDA, so without a GPU a QLoRA run would fail seconds after launch. The wizard says so as
soon as the preset is picked, and Review will not launch it."""

from __future__ import annotations

from tunewiz.engine.contract.config import Config


def lora_alternative(cfg: Config) -> str:
    """The preset that does the same job without 4-bit weights."""
    return "pretrain-lora" if cfg.stage == "pretrain" else "sft-lora"


def cuda_problem(cfg: Config, gpus: list | None) -> str:
    """Why this config cannot train on a machine with these GPUs, or "" (also while the
    GPUs are not known yet: None)."""
    if cfg.method == "qlora" and gpus is not None and not gpus:
        return f"QLoRA needs a CUDA GPU; choose {lora_alternative(cfg)}"
    return ""
