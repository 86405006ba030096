"""`tunewiz new [FILE]`: the wizard for a new run, optionally filled from a config file.

FILE is an XTuner config (.py, read as data as `import-xtuner` reads it) or a tunewiz
config (.yaml). It is read before the interface opens, so a bad file is one line with its
file:line and the terminal is never taken over for nothing.
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "new", help="open the wizard for a new run, filled from an XTuner or tunewiz config",
        description="Open the wizard for a new run (even when there are runs already). With FILE, "
                    "every step starts from its settings: an XTuner config (.py, never run) or a "
                    "tunewiz config (.yaml). The Review step lists the XTuner settings that could "
                    "not be mapped, each with its line, before anything is launched.")
    s.add_argument("config", nargs="?", default=None, metavar="FILE",
                   help="e.g. internlm2_chat_1_8b_qlora_alpaca_e3_copy.py or my.yaml")
    return s


def run(args) -> int:
    from tunewiz.tui.app import open_app
    from tunewiz.tui.screens.wizard.state import read_start_file

    start = read_start_file(args.config) if args.config else None
    open_app(args.output_dir, wizard=True, start=start)
    return 0
