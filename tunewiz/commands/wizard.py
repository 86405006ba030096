"""`tunewiz` with no command: the TUI (Home, or the wizard when there is no run yet)."""

from __future__ import annotations


def run(args) -> int:
    from tunewiz.tui.app import open_app

    open_app(args.output_dir)
    return 0
