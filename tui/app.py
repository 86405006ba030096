"""The tunewiz Textual app: Home, the wizard, the run monitor, convert & merge, chat.

Screens sit on one stack (Home at the bottom) rather than in MODES: every flow here is
"go in, come back with q/escape", which a stack expresses directly and keeps the keys
the same on every screen. Heavy screens (monitor charts, chat) are imported when opened,
so the first screen shows in well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from .services.engine_cli import EngineCli


class TunewizApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "tunewiz"
    SUB_TITLE = "fine-tune LLMs from the terminal"
    BINDINGS = [Binding("ctrl+q", "quit", "quit", show=False, priority=True)]

    def __init__(self, output_dir: str | Path = "work_dirs", engine: EngineCli | None = None,
                 attach: Path | None = None, open_wizard: bool = False,
                 wizard_defaults: dict | None = None, cursor_blink: bool = True):
        super().__init__()
        self.output_dir = Path(output_dir)
        self.engine = engine or EngineCli(output_dir=str(output_dir))
        self.attach_to = attach
        self.open_wizard = open_wizard
        self.wizard_defaults = wizard_defaults or {}
        # Snapshot tests turn blinking off so two screenshots of one state are identical.
        self.cursor_blink = cursor_blink

    def on_mount(self) -> None:
        from .screens.home import HomeScreen

        self._tty_fds = [] if self.is_headless else [fd for fd in (0, 1, 2) if _is_tty(fd)]
        if self._tty_fds:
            self.set_interval(2.0, self.exit_if_terminal_gone)
        self.push_screen(HomeScreen())
        if self.attach_to is not None:
            self.open_monitor(self.attach_to)
        elif self.open_wizard:
            self.start_wizard()

    def exit_if_terminal_gone(self) -> None:
        """A dropped SSH link or a killed tmux hangs the terminal up, but the hangup signal
        reaches only the session's leader: under `make run` that is make, which just keeps
        waiting, and the app would live on without a terminal, its input loop spinning a core. A
        hung-up terminal is no longer a tty, so the app checks and leaves. Training runs
        in its own session and carries on."""
        if not any(_is_tty(fd) for fd in self._tty_fds):
            os._exit(129)  # 128 + SIGHUP; the terminal is gone, so there is nothing to restore

    def start_wizard(self) -> None:
        from .screens.wizard.flow import run_wizard

        run_wizard(self, self.wizard_defaults)

    def open_monitor(self, run: Path) -> None:
        from .screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(Path(run)))

    def open_convert(self, run: Path) -> None:
        from .screens.convert_merge import ConvertMergeScreen

        self.push_screen(ConvertMergeScreen(Path(run)))

    def open_chat(self, run: Path | None = None, side_by_side: bool = False) -> None:
        from .screens.chat import ChatScreen

        self.push_screen(ChatScreen(run=run, side_by_side=side_by_side))

    def on_descendant_focus(self, event) -> None:
        # Only a focused widget blinks, so focus is the moment to switch blinking off.
        if not self.cursor_blink and hasattr(event.widget, "cursor_blink"):
            event.widget.cursor_blink = False


def open_app(output_dir: str | Path, wizard: bool = False, start=None) -> None:
    """Home, or straight into the wizard when asked or when there is no run yet; ``start``
    (a wizard StartFile) fills the wizard from a config file."""
    from tunewiz.engine.contract.rundir import list_runs

    output_dir = Path(output_dir)
    open_wizard = wizard or start is not None or not list_runs(output_dir)
    TunewizApp(output_dir, open_wizard=open_wizard, wizard_defaults={"start": start} if start else None).run()


def open_monitor(run: Path, output_dir: str | Path) -> None:
    """The monitor for one run; q goes to Home."""
    TunewizApp(output_dir, attach=run).run()


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
