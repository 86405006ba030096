"""The command line: the headless twin of the wizard.

Each subcommand is a module of tunewiz/commands (its arguments beside its code); this file
only assembles the parser and runs the chosen one. Errors a user can cause (TunewizError)
become one line on stderr and exit code 1 (engine/entry_point.py); usage errors exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os

from tunewiz.commands import SUBCOMMANDS

EPILOG = """\
typical session:
  tunewiz demo                                   prepare the demo model and sample data
  tunewiz presets copy sft-lora my.yaml          start from a preset, edit it
  tunewiz check-data data/assistant.json --model demo
  tunewiz prepare-data my.yaml                   tokenize and cache the data (optional)
  tunewiz train my.yaml --detach                 train in the background
  tunewiz attach                                 watch the newest run
  tunewiz convert work_dirs/RUN adapter/         checkpoint -> HF adapter
  tunewiz merge demo adapter/ merged/            adapter + base -> HF model
  tunewiz chat merged/                           talk to it
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tunewiz", description="Fine-tune LLMs from the terminal. With no command, opens the wizard.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--output-dir", default=None, help="folder with the runs (default: work_dirs)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        _command(name).add_parser(sub)
    return p


def _command(name: str):
    return importlib.import_module(f"tunewiz.commands.{SUBCOMMANDS[name]}")


def _version() -> str:
    from tunewiz import __version__
    return f"tunewiz {__version__}"


def main(argv: list[str] | None = None) -> int:
    from tunewiz.engine.entry_point import run_entry

    args = build_parser().parse_args(argv)
    if getattr(args, "output_dir", None) is None:
        args.output_dir = os.environ.get("TUNEWIZ_OUTPUT_DIR", "work_dirs")
    if args.command is None:
        from tunewiz.commands import wizard
        return run_entry(lambda: wizard.run(args))
    return run_entry(lambda: _command(args.command).run(args))


if __name__ == "__main__":
    raise SystemExit(main())
