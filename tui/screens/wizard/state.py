"""What the wizard has gathered so far: a Config being built, plus choices around it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from tunewiz.engine.contract.config import Config, config_from_dict, default_lr, dump_yaml, load_config, to_dict
from tunewiz.engine.contract.errors import ConfigError
# The wizard's names for the one preset catalog the CLI's `presets list` reads too.
from tunewiz.engine.contract.preset_catalog import describe as preset_description  # noqa: F401
from tunewiz.engine.contract.preset_catalog import list_presets as preset_files  # noqa: F401

STEP_NAMES = ("Model", "Preset", "Dataset", "Layout", "Review")
FROM_FILE = "<from file>"             # the Preset step's entry for the file the wizard started from
START_SUFFIXES = (".py", ".yaml", ".yml")


@dataclass
class StartFile:
    """A config the wizard starts from: a tunewiz YAML, or an XTuner .py read as data.
    ``unmapped`` are the XTuner settings left out, as FILE:LINE: name = value not mapped (why)."""

    path: Path
    config: dict                        # loads with config_from_dict
    kind: str                           # "xtuner" or "yaml"
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_dir: str | None = None       # only when the file names one

    def unmapped_by_line(self) -> list[str]:
        """The unmapped settings as "line N: ..." (the file is said once, above them)."""
        prefix = f"{self.path}:"
        return [f"line {u[len(prefix):]}" if u.startswith(prefix) else u for u in self.unmapped]

    def summary(self) -> str:
        cfg = self.config
        what = "XTuner config" if self.kind == "xtuner" else "config"
        left = len(self.unmapped)
        unmapped = f"; {left} setting{'s' if left != 1 else ''} not mapped (Review lists them)" if left else ""
        return f"{what} {self.path.name}: {cfg['method']} {cfg['stage']}, model {cfg['model']['path']}{unmapped}"


def looks_like_start_file(text: str) -> bool:
    """A typed path that names a config file rather than a model folder."""
    path = Path(text).expanduser()
    return path.suffix.lower() in START_SUFFIXES and path.is_file()


def read_start_file(path: str | Path) -> StartFile:
    """An XTuner config (.py) or a tunewiz config (.yaml); raises ConfigError (file, line, fix)."""
    from tunewiz.engine.contract.xtuner_config import import_xtuner

    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in START_SUFFIXES:
        raise ConfigError(f"{path}: not an XTuner config (.py) or a tunewiz config (.yaml)",
                          "give the .py that `xtuner copy-cfg` wrote, or a .yaml config")
    if suffix == ".py":
        imported = import_xtuner(path)
        return StartFile(path, imported.config, "xtuner", imported.unmapped_lines(), list(imported.notes))
    cfg = load_config(path)
    # The wizard writes runs under its own output folder unless the file asks for another.
    explicit = cfg.output_dir if "output_dir" in getattr(cfg, "_where", {}) else None
    return StartFile(path, to_dict(cfg), "yaml", output_dir=explicit)


@dataclass
class WizardState:
    config: Config = field(default_factory=Config)
    preset: str = ""                    # preset file stem, "" = schema defaults
    config_path: str = ""
    run: Path | None = None             # set once launched
    saved_path: Path | None = None
    source: StartFile | None = None     # the config file the wizard was filled from

    def start_from(self, source: StartFile) -> None:
        """Take every setting of the file; the output folder stays unless the file names one."""
        output_dir = source.output_dir or self.config.output_dir
        self.source = source
        self.config = config_from_dict(copy.deepcopy(source.config), str(source.path))
        self.config.output_dir = output_dir
        self.preset = FROM_FILE

    def apply_preset(self, path: Path | None) -> None:
        """Take the preset's recipe, keeping what earlier steps chose (model, data, layout, name)."""
        if self.source is not None and path == self.source.path:
            model = copy.deepcopy(self.config.model)    # chosen on the Model step, before this one
            self.start_from(self.source)
            self.config.model = model
            return
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
        if self.preset == FROM_FILE:
            return None
        return next((p for p in preset_files() if p.stem == self.preset), None) if self.preset else None

    def preset_label(self) -> str:
        if self.preset == FROM_FILE and self.source is not None:
            return f"from {self.source.path.name}"
        return f"preset {self.preset or 'defaults'}"

    def config_text(self, path: str | Path) -> str:
        """The config as the file will read: commented like its preset, with the command that runs it."""
        from tunewiz.engine.contract.config_text import commented_yaml

        text = commented_yaml(self.config, self.preset_path(), f"tunewiz train {path} --detach")
        if self.source is None:
            return text
        # Like `tunewiz import-xtuner`'s YAML: the file says where it came from and what was left.
        first, rest = text.split("\n", 1)
        head = [f"# Started from {self.source.path}."]
        if self.source.unmapped:
            head.append("# Not mapped (tunewiz defaults are used instead):")
            head += [f"#   {line}" for line in self.source.unmapped]
        return "\n".join([first, *head, rest])

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
