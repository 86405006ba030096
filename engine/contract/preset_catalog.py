"""The ready recipes under presets/: what `tunewiz presets list | copy` and the wizard's Preset step offer."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import ConfigError
from .output_folder import write_user_file


def preset_dir() -> Path:
    import tunewiz.presets

    return Path(tunewiz.presets.__file__).resolve().parent


def list_presets(pattern: str | None = None) -> list[Path]:
    """The presets that match pattern (all without one), smaller models first."""
    found = sorted(preset_dir().glob("*.yaml"), key=lambda p: _natural_key(p.stem))
    return [p for p in found if not pattern or _matches(p, _search_form(pattern))]


def _search_form(text: str) -> str:
    # Hub ids write versions and sizes with dots and dashes (Qwen2.5-7B-Instruct), preset
    # names with underscores (qwen2_5_7b_instruct): compare them in one spelling.
    return re.sub(r"[-. ]", "_", text.strip().lower())


def _matches(preset: Path, wanted: str) -> bool:
    """wanted is part of the preset's name or of its model's hub id, or is an XTuner config
    name that starts with the preset's name (internlm2_chat_7b_qlora_alpaca_e3 finds
    internlm2_chat_7b_qlora: XTuner adds the dataset and the epochs to its names)."""
    name = _search_form(preset.stem)
    return wanted in name or wanted.startswith(name + "_") or wanted in _search_form(_model_hub_id(preset))


def _model_hub_id(preset: Path) -> str:
    """The preset's model.path when it is a hub id (owner/name); "" for demo and the like."""
    try:
        path = str(yaml.safe_load(preset.read_text(encoding="utf-8"))["model"]["path"])
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return ""  # a preset without a model still matches by its name
    return path if "/" in path else ""


def _natural_key(name: str) -> list:
    # 0_5b, 1_5b, 7b, 14b, 72b in that order, not 0_5b, 14b, 1_5b, 72b, 7b.
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def describe(path: Path) -> str:
    """What the preset is for: its leading comment lines, less the command that runs it."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not text.startswith("tunewiz "):
            lines.append(text)
    return " ".join(lines)


def copy_preset(name: str, dest: Path) -> tuple[Path, Path]:
    """Copy the preset called name to dest (a file, or a folder to put it in); give back
    (preset, written file). Never overwrites: an existing dest is an error saying why."""
    matches = [p for p in list_presets() if p.stem == name]
    if not matches:
        import difflib

        close = difflib.get_close_matches(name, [p.stem for p in list_presets()], n=3, cutoff=0.5)
        raise ConfigError(f"no preset named {name!r}", (f"did you mean {', '.join(close)}? " if close else "")
                          + "`tunewiz presets list [-p PATTERN]` lists them")
    if dest.is_dir():
        dest = dest / matches[0].name
    outcome = write_user_file(dest, matches[0].read_bytes(), "choose a destination in an existing, writable folder")
    if outcome == "same":
        raise ConfigError(f"{dest} already exists (an unedited copy of {matches[0].stem})",
                          f"edit it, then `tunewiz train {dest}`")
    if outcome == "kept":
        raise ConfigError(f"{dest} already exists and holds something else",
                          "choose another destination; tunewiz never overwrites it")
    return matches[0], dest
