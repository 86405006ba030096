"""The packages a config needs beyond the base install, checked before anything slow.

QLoRA needs bitsandbytes, a DeepSpeed layout needs deepspeed, a tracker needs its own
package. A fresh machine used to find out minutes in (after the data was tokenized) or
as "this is a bug"; `tunewiz train` now names every missing package at once, with the
one command that installs them, before a run directory exists. Torch-free: the wizard's
Review step asks the same question. Presence is looked up, never imported (importing
bitsandbytes or deepspeed takes seconds and may touch CUDA).
"""

from __future__ import annotations

import importlib.util

from .errors import ConfigError


def needed_packages(cfg, cuda: bool = True) -> list[tuple[str, str]]:
    """(package, what needs it) for this config, in install order. Without CUDA, QLoRA's
    own error ("needs a CUDA GPU") is the one to show, not a package to install."""
    need = []
    if cfg.quantized and cuda:
        need.append(("bitsandbytes", "method: qlora (4-bit base)"))
    if cfg.layout.uses_deepspeed:
        need.append(("deepspeed", f"layout.deepspeed: {cfg.layout.deepspeed}"))
    if getattr(cfg.train, "float8", False) is True and cuda:
        need.append(("torchao", "train.float8: true"))
    for tracker in getattr(cfg.train, "report_to", None) or ():
        need.append((tracker, f"train.report_to: {tracker}"))
    return need


def missing_packages(cfg, cuda: bool = True) -> list[tuple[str, str]]:
    return [(pkg, why) for pkg, why in needed_packages(cfg, cuda) if not _installed(pkg)]


def require_packages(cfg, where: str = "the config", cuda: bool = True) -> None:
    """One error naming every missing package and the command that installs them all."""
    missing = missing_packages(cfg, cuda)
    if not missing:
        return
    names = ", ".join(f"{pkg} (for {why})" for pkg, why in missing)
    raise ConfigError(f"{where} needs {names}, not installed here",
                      f"pip install {' '.join(pkg for pkg, _ in missing)}"
                      + ("  (on a CUDA machine `make setup` installs the gpu extra)"
                         if any(pkg in GPU_EXTRA for pkg, _ in missing) else ""))


GPU_EXTRA = ("bitsandbytes", "deepspeed", "torchao")   # pyproject's `gpu` extra


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False
