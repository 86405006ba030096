"""Which models a chat can load for a run: merged, base + adapter, full weights, or the base."""

from __future__ import annotations

from pathlib import Path

from tunewiz.engine.contract.rundir import ADAPTER, HF, MERGED

from .chat_client import ChatTarget


def run_base_model(run: Path) -> str:
    from tunewiz.engine.contract.config import load_config
    from tunewiz.engine.contract.errors import TunewizError
    from tunewiz.engine.contract.rundir import CONFIG

    try:
        return load_config(Path(run) / CONFIG).model.path
    except TunewizError:
        return "demo"


def run_stage(run: Path | None) -> str:
    """The run's stage (sft or pretrain); sft for no run or an unreadable config."""
    from tunewiz.engine.contract.config import load_config
    from tunewiz.engine.contract.errors import TunewizError
    from tunewiz.engine.contract.rundir import CONFIG

    if run is None:
        return "sft"
    try:
        return load_config(Path(run) / CONFIG).stage
    except TunewizError:
        return "sft"


def tuned_targets(run: Path) -> list[ChatTarget]:
    """Fine-tuned choices, best first: the merged model, then the adapter on its base."""
    run = Path(run)
    base = run_base_model(run)
    targets = []
    if (run / MERGED / "config.json").is_file():
        targets.append(ChatTarget("fine-tuned (merged)", str(run / MERGED)))
    if (run / HF / "config.json").is_file():
        targets.append(ChatTarget("fine-tuned (full)", str(run / HF)))
    if (run / ADAPTER / "adapter_config.json").is_file():
        targets.append(ChatTarget("fine-tuned (base + adapter)", base, adapter=str(run / ADAPTER)))
    return targets


def chat_targets(run: Path | None) -> tuple[list[ChatTarget], ChatTarget]:
    """(fine-tuned choices, the base model) for a run; without a run, the demo model."""
    if run is None:
        return [], ChatTarget("base (demo)", "demo")
    base = run_base_model(run)
    return tuned_targets(run), ChatTarget(f"base ({Path(base).name or base})", base)
