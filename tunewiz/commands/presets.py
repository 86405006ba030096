"""`tunewiz presets list | copy`: the ready-made configs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("presets", help="list or copy ready-made configs",
                       description="Ready-made configs: list them, or copy one to edit and train.")
    ps = s.add_subparsers(dest="action", metavar="ACTION", required=True)
    pl = ps.add_parser("list", help="list presets")
    pl.add_argument("-p", "--pattern", default=None,
                    help="only presets whose name or model hub id contains this (any case; . and - "
                         "as _), or whose name an XTuner config name starts with")
    pc = ps.add_parser("copy", help="copy a preset to edit it")
    pc.add_argument("name", help="preset name (see `tunewiz presets list`)")
    pc.add_argument("dest", help="file to write, or a folder to put it in")
    return s


def run(args) -> int:
    from tunewiz.engine.contract.config import load_config
    from tunewiz.engine.preset_catalog import copy_preset, describe, list_presets

    if args.action == "copy":
        preset, dest = copy_preset(args.name, Path(args.dest))
        print(f"copied {preset.stem} to {dest}; edit it, then `tunewiz train {dest}`")
        return 0
    presets = list_presets(args.pattern)
    if not presets:
        print(f"no preset matches {args.pattern!r}")
        return 0
    width = max(len(p.stem) for p in presets)
    for p in presets:
        cfg = load_config(p)
        print(f"{p.stem.ljust(width)}  {cfg.method:5} {cfg.stage:8} {describe(p)}")
    return 0
