"""Drives the wizard: pushes one step screen after another and waits for each answer."""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from tunewiz.engine.contract.config import set_key

from .state import WizardState, preset_files


def initial_state(app: App, defaults: dict) -> WizardState:
    """The state the wizard opens with: demo model, the default preset, the sample dataset;
    or everything from the config file it was started with (`tunewiz new FILE`)."""
    state = WizardState()
    state.config.output_dir = str(app.output_dir)
    # Once: a later "new run" from Home starts from the defaults again.
    start = defaults.pop("start", None)
    if start is not None:
        state.start_from(start)
        return state
    presets = {p.stem: p for p in preset_files()}
    preset = defaults.get("preset") or next(
        (n for n in ("demo-assistant", "sft-lora") if n in presets), None)
    state.apply_preset(presets.get(preset) if preset else None)
    state.config.model.path = defaults.get("model", "demo")
    dataset = defaults.get("dataset") or _sample_dataset()
    if dataset:
        state.config.data.files = [dataset]
    state.config.name = defaults.get("name", state.config.name if state.config.name != "run" else "assistant")
    for key, value in defaults.get("overrides", {}).items():
        set_key(state.config, key, value)
    return state


def _sample_dataset() -> str | None:
    """The personal-assistant set `tunewiz demo` writes, when it is there."""
    for candidate in ("data/assistant.json", "data/assistant.jsonl", "data/assistant_openai.jsonl"):
        if Path(candidate).is_file():
            return candidate
    return None


def run_wizard(app: App, defaults: dict) -> None:
    app.run_worker(_drive(app, initial_state(app, defaults)), exclusive=True, group="wizard")


async def _drive(app: App, state: WizardState) -> None:
    from .dataset_step import DatasetStep
    from .layout_step import LayoutStep
    from .model_step import ModelStep
    from .preset_step import PresetStep
    from .review_step import ReviewStep

    steps = [ModelStep, PresetStep, DatasetStep, LayoutStep, ReviewStep]
    index = 0
    while 0 <= index < len(steps):
        outcome = await app.push_screen_wait(steps[index](state))
        if outcome == "cancel":
            return
        index += 1 if outcome == "next" else -1
    if index == len(steps) and state.run is not None:
        app.open_monitor(state.run)
