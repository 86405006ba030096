"""An XTuner v0 config (a Python file) as a tunewiz config. Torch-free; nothing is executed.

`tunewiz import-xtuner` and the wizard both call :func:`import_xtuner`. It reads the file
with :mod:`xtuner_eval` (literals and names only), maps it with :mod:`xtuner_mapping`, and
gives back a whole tunewiz config as a dict that ``config_from_dict`` accepts (the wizard
loads it like a preset), plus every setting it could not carry over, each with its line
and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .config import MAX_BYTES, NAME_MAX_BYTES, config_from_dict, dump_yaml
from .errors import ConfigError
from .xtuner_eval import read_module
from .xtuner_mapping import Mapper, Unmapped


@dataclass
class XtunerImport:
    """A converted config: ``config`` loads with ``config_from_dict``; ``unmapped`` is what was left."""

    config: dict
    unmapped: list[Unmapped]
    notes: list[str]
    where: str

    def unmapped_lines(self) -> list[str]:
        return [u.line_text(self.where) for u in self.unmapped]

    def yaml_text(self, out_name: str = "CONFIG.yaml") -> str:
        head = [f"# tunewiz train {out_name}",
                f"# Imported from the XTuner config {self.where} (tunewiz import-xtuner)."]
        if self.unmapped:
            head.append("# Not mapped (tunewiz defaults are used instead):")
            head += [f"#   {line}" for line in self.unmapped_lines()]
        head += [f"# Note: {n}" for n in self.notes]
        return "\n".join(head) + "\n" + dump_yaml(config_from_dict(self.config, self.where))


def import_xtuner(path: str | Path) -> XtunerImport:
    """Read an XTuner config file; raises ConfigError (file:line and fix) for bad input."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file", "give the XTuner config (.py) to import")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}:1: {path.stat().st_size:,} bytes is too large for an XTuner config",
                              "an XTuner config is a few KiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}:1: cannot read ({e})", "check the file's permissions and encoding") from None
    return import_xtuner_text(text, str(path), run_name(path.stem))


def import_xtuner_text(text: str, where: str, name: str = "run") -> XtunerImport:
    module = read_module(text, where)
    config, unmapped, notes = Mapper(module, where).convert(name)
    return XtunerImport(config, unmapped, notes, where)


def run_name(stem: str) -> str:
    """A run name (config.check_name) from a file name: other characters become '-'."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem).lstrip(".")[:NAME_MAX_BYTES]
    return name or "run"
