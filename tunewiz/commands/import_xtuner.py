"""`tunewiz import-xtuner CONFIG.py [-o OUT.yaml]`: an XTuner config as a tunewiz config.

For users arriving with an XTuner v0 recipe (what `xtuner copy-cfg` wrote, perhaps edited):
the file is read as data, never run, and every setting tunewiz cannot carry over is printed
with its line, so nothing is dropped without a word.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "import-xtuner", help="turn an XTuner config (.py) into a tunewiz config",
        description="Read an XTuner v0 Python config without running it and write the tunewiz YAML "
                    "that trains the same recipe: model, method (full, lora, qlora), data and format, "
                    "template, optimization, checkpoints and eval prompts. Each setting it cannot "
                    "map is printed as FILE:LINE with the reason. An existing OUT is never replaced.")
    s.add_argument("config", help="the XTuner config, e.g. internlm2_chat_1_8b_qlora_alpaca_e3_copy.py")
    s.add_argument("-o", "--output", default=None, metavar="OUT.yaml",
                   help="file to write (default: CONFIG with .yaml in place of .py)")
    return s


def run(args) -> int:
    from tunewiz.engine.contract.errors import ConfigError
    from tunewiz.engine.contract.output_folder import write_user_file
    from tunewiz.engine.contract.xtuner_config import import_xtuner

    out = Path(args.output) if args.output else Path(args.config).with_suffix(".yaml")
    if out.resolve() == Path(args.config).resolve():
        raise ConfigError(f"{out}: is the XTuner config itself", "give another output, e.g. -o my.yaml")
    imported = import_xtuner(args.config)
    text = imported.yaml_text(str(out))
    outcome = write_user_file(out, text.encode("utf-8"), "choose an output in an existing, writable folder")
    if outcome == "kept":
        raise ConfigError(f"{out} already exists and holds something else",
                          "choose another output with -o; tunewiz never overwrites it")
    cfg = imported.config
    said = "already holds this import" if outcome == "same" else "written"
    print(f"{out}: {said} ({cfg['method']} {cfg['stage']}, model {cfg['model']['path']}, "
          f"data {', '.join(cfg['data']['files']) or 'none given'})")
    for line in imported.unmapped_lines():
        print(line)
    for note in imported.notes:
        print(f"note: {note}")
    left = len(imported.unmapped)
    check = f"{left} setting{'s' if left != 1 else ''} not mapped (listed above): check them, then " if left else ""
    print(f"{check}`tunewiz train {out}`")
    return 0
