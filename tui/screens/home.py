"""Home: the runs in the output directory, and the ways in (new run, attach, chat)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from rich.cells import cell_len
from rich.text import Text

from tunewiz.engine.contract.progress_meter import SURE_AFTER

from tunewiz.engine.contract.run_summary import CONVERTIBLE, LIVE

from ..formatting import clock, eta, loss, status_text, styled


@dataclass
class RunRow:
    path: Path
    name: str
    status: str
    step: int
    total: int
    loss: float | None
    started: float | None
    eta_s: float | None
    problem: str = ""           # why the run cannot be read ("" when it can)


class MergeChecked(Message):
    """A run's status read afresh before convert & merge: only a finished run goes on."""

    def __init__(self, row: RunRow):
        super().__init__()
        self.row = row


# Runs with weights worth converting: a completed run, or one stopped at a checkpoint.


def refusal(row: RunRow) -> str:
    """Why convert & merge cannot start on this run yet, in one line."""
    if row.status in LIVE:
        where = f" (step {row.step}/{row.total})" if row.total else ""
        return f"{row.name} is still {row.status}{where}: convert & merge once it has finished"
    if row.status == "unreadable":
        return f"{row.name} cannot be read ({row.problem})"
    if row.status == "failed":
        return f"{row.name} failed: nothing finished to convert (enter shows its error)"
    return f"{row.name} is {row.status}: convert & merge needs a completed or stopped run"


class RunsLoaded(Message):
    def __init__(self, rows: list[RunRow]):
        super().__init__()
        self.rows = rows


def load_row(run: Path) -> RunRow:
    from tunewiz.engine.contract.run_listing import default_lister

    return _row(default_lister().read(run))


def load_rows(output_dir: Path) -> list[RunRow]:
    # Each run is read on its own and only its new events are read (run_listing): one
    # damaged run shows as unreadable, and a refresh costs little however long runs get.
    from tunewiz.engine.contract.run_listing import default_lister

    return [_row(r) for r in default_lister().list(output_dir)]


def _row(r) -> RunRow:
    return RunRow(r.path, r.name, r.status, r.step, r.total, r.loss, r.started, r.eta_s, r.problem)


COLUMNS = ("run", "status", "step", "loss", "started", "ETA")


def cells(row: RunRow) -> tuple:
    return (Text(row.name), status_text(row.status), f"{row.step}/{row.total}" if row.total else "–",
            loss(row.loss), clock(row.started), eta(row.eta_s, guess=row.step < SURE_AFTER))


def column_widths(table_cells: list[tuple]) -> list[int]:
    """Each column as wide as its header or its widest cell, whichever is wider."""
    widths = [cell_len(label) for label in COLUMNS]
    for row in table_cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], cell_len(cell.plain if isinstance(cell, Text) else cell))
    return widths


def fill(table: DataTable, rows: list[RunRow]) -> None:
    """Puts the rows in the table with its columns sized to them before anything is painted.
    A DataTable left to size its columns itself measures them only on its next idle, and a
    repaint that lands before then keeps the rows cut at the old widths until the table next
    changes (Home's refresh tick, seconds later): so the widths are set here, with the rows."""
    table_cells = [cells(row) for row in rows]
    table.clear(columns=True)
    for label, width in zip(COLUMNS, column_widths(table_cells)):
        table.add_column(label, width=width, key=label)
    for row, row_cells in zip(rows, table_cells):
        table.add_row(*row_cells, key=str(row.path))


HINT = "n new run · enter attach · m convert & merge · c chat · v base vs tuned"


class HomeScreen(Screen):
    BINDINGS = [
        Binding("n", "new_run", "new run"),
        Binding("enter,a", "attach", "attach"),
        Binding("m", "merge", "convert & merge"),
        Binding("c", "chat", "chat"),
        Binding("v", "compare", "side by side"),
        Binding("r", "refresh", "refresh", show=False),
        Binding("q", "app.quit", "quit"),
    ]

    refused = ""        # the refusal the hint line shows, "" while it shows the keys

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="home-title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static(HINT, id="home-hint")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        fill(self.query_one(DataTable), [])
        self.action_refresh()
        # Runs progress while Home is open; a slow refresh keeps the table honest.
        self.set_interval(5, self.action_refresh)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load_runs()

    @work(thread=True, exclusive=True, group="home-runs")
    def load_runs(self) -> None:
        self.post_message(RunsLoaded(load_rows(self.app.output_dir)))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.rows = {str(r.path): r for r in message.rows}
        table = self.query_one(DataTable)
        selected = self.selected_run()
        fill(table, message.rows)
        title = self.query_one("#home-title", Static)
        if message.rows:
            title.update(styled("Runs in ", (str(self.app.output_dir), "bold")))
            if selected is not None and str(selected) in {str(r.path) for r in message.rows}:
                table.move_cursor(row=table.get_row_index(str(selected)))
        else:
            title.update(styled("No runs in ", (str(self.app.output_dir), "bold"), " yet: press ", ("n", "bold"),
                                " to start one."))

    def selected_run(self) -> Path | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return Path(key.value) if key.value else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_attach()

    def action_new_run(self) -> None:
        self.app.start_wizard()

    def action_attach(self) -> None:
        if (run := self.selected_run()) is not None:
            row = getattr(self, "rows", {}).get(str(run))
            if row is not None and row.status == "unreadable":
                # Its events or state cannot be followed: say why instead of a broken monitor.
                self.show_hint(refusal(row))
                return
            self.app.open_monitor(run)

    def action_merge(self) -> None:
        if (run := self.selected_run()) is not None:
            self.check_convertible(run)

    @work(thread=True, exclusive=True, group="home-merge")
    def check_convertible(self, run: Path) -> None:
        # The table may be a few seconds old: read the run's status now, off the UI thread.
        self.post_message(MergeChecked(load_row(run)))

    def on_merge_checked(self, message: MergeChecked) -> None:
        if message.row.status in CONVERTIBLE:
            self.app.open_convert(message.row.path)
        else:
            # On the hint line, not a toast: it stays until the cursor moves, so it is read.
            self.show_hint(refusal(message.row))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = getattr(self, "rows", {}).get(str(event.row_key.value))
        self.show_hint(refusal(row) if row is not None and row.status == "unreadable" else "")

    def show_hint(self, refused: str) -> None:
        """The hint line: why the selected run cannot go on, or ("") the keys."""
        self.refused = refused
        self.query_one("#home-hint", Static).update(styled((refused, "bold yellow")) if refused else HINT)

    def action_chat(self) -> None:
        self.app.open_chat(self.selected_run())

    def action_compare(self) -> None:
        self.app.open_chat(self.selected_run(), side_by_side=True)
