"""What the wizard has gathered so far: a Config being built, plus choices around it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from tunewiz.engine.contract.config import Config, config_from_dict, default_lr, dump_yaml, load_config, to_dict
# The wizard's names for the one preset catalog the CLI's `presets list` reads too.
from tunewiz.engine.contract.preset_catalog import describe as preset_description  # noqa: F401
from tunewiz.engine.contract.preset_catalog import list_presets as preset_files  # noqa: F401

STEP_NAMES = ("Model", "Preset", "Dataset", "Layout", "Review")


@dataclass
class WizardState:
    config: Config = field(default_factory=Config)
    preset: str = ""                    # preset file stem, "" = schema defaults
    config_path: str = ""
    run: Path | None = None             # set once launched
    saved_path: Path | None = None

    def apply_preset(self, path: Path | None) -> None:
        """Take the preset's recipe, keeping what earlier steps chose (model, data, layout, name)."""
        base = load_config(path) if path else Config(method="lora", stage="sft")
        keep = self.config
        base.name, base.output_dir = keep.name, keep.output_dir
        base.model = copy.deepcopy(keep.model)
        if keep.data.files:
            base.data.files = list(keep.data.files)
            base.data.format = keep.data.format
        base.layout = copy.deepcopy(keep.layout)
        self.config = base
        self.preset = path.stem if path else ""

    def default_config_path(self) -> str:
        return self.config_path or str(Path(self.config.output_dir) / "configs" / f"{self.config.name}.yaml")

    def preset_path(self) -> Path | None:
        return next((p for p in preset_files() if p.stem == self.preset), None) if self.preset else None

    def config_text(self, path: str | Path) -> str:
        """The config as the file will read: commented like its preset, with the command that runs it."""
        from tunewiz.engine.contract.config_text import commented_yaml

        return commented_yaml(self.config, self.preset_path(), f"tunewiz train {path} --detach")

    def save(self, path: Path) -> Path:
        """Write the config to path, round-tripped through the schema first, so what is
        written is exactly what the engine accepts; raises TunewizError otherwise."""
        config_from_dict(to_dict(self.config))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.config_text(path), encoding="utf-8")
        self.config_path = str(path)
        self.saved_path = path
        return path

    def lr_default(self) -> float:
        return default_lr(self.config.method)
