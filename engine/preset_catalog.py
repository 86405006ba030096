"""`tunewiz presets list | copy`: the ready recipes under presets/. Torch-free."""

from __future__ import annotations

from pathlib import Path

from .contract.config import load_config
from .contract.errors import ConfigError, TunewizError
from .contract.output_folder import write_file_once


def preset_dir() -> Path:
    import tunewiz.presets

    return Path(tunewiz.presets.__file__).resolve().parent


def list_presets(pattern: str | None = None) -> list[Path]:
    return [p for p in sorted(preset_dir().glob("*.yaml")) if not pattern or pattern in p.stem]


def describe(path: Path) -> str:
    """The preset's first comment line after the command line: what it is for."""
    lines = [ln[1:].strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("#")]
    return lines[1] if len(lines) > 1 else ""


def cmd_presets(args) -> int:
    if args.action == "list":
        presets = list_presets(args.pattern)
        if not presets:
            print(f"no preset matches {args.pattern!r}")
            return 0
        width = max(len(p.stem) for p in presets)
        for p in presets:
            cfg = load_config(p)
            print(f"{p.stem.ljust(width)}  {cfg.method:5} {cfg.stage:8} {describe(p)}")
        return 0
    matches = [p for p in list_presets() if p.stem == args.name]
    if not matches:
        known = ", ".join(p.stem for p in list_presets())
        raise ConfigError(f"no preset named {args.name!r}", f"known presets: {known}")
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / matches[0].name
    try:
        outcome = write_file_once(dest, matches[0].read_bytes())
    except TunewizError:
        raise
    except OSError as e:
        raise ConfigError(f"cannot write {dest} ({e.strerror or e})",
                          "choose a destination in an existing, writable folder") from None
    if outcome == "same":
        raise ConfigError(f"{dest} already exists (an unedited copy of {matches[0].stem})",
                          f"edit it, then `tunewiz train {dest}`")
    if outcome == "kept":
        raise ConfigError(f"{dest} already exists and holds something else",
                          "choose another destination; tunewiz never overwrites it")
    print(f"copied {matches[0].stem} to {dest}; edit it, then `tunewiz train {dest}`")
    return 0
