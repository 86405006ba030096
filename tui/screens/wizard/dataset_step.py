"""Step 3, Dataset: pick a data source, see it validated, and preview what the model sees.

Sources are whatever data.files takes: JSON/JSONL, Parquet, Arrow, CSV/TSV files,
save_to_disk folders, folders of data files, hub ids. The quick check runs in a worker
thread with the engine's torch-free reader and reads only the first QUICK_RECORDS records
of each source (the format, early errors with file:line), so a large set costs no more
than a small one. The full check, the rendered preview and the token histogram need the
tokenizer and every record, so they come from `tunewiz check-data --json` in a
subprocess: the first sample as it is rendered with the template, trained spans
highlighted, and the token lengths against max_length. Hub ids are left to check-data
altogether: loading one may download it.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DirectoryTree, Input, RichLog, Select, Static

from tunewiz.engine.contract.config import FORMATS
from tunewiz.engine.contract.sources import DATA_SUFFIXES

from ...formatting import styled
from ...services.engine_cli import EngineCommandFailed
from .step import StepInvalid, WizardStep

QUICK_RECORDS = 200                # records of each source the in-process check reads
# A save_to_disk folder's own bookkeeping files, which are JSON but not data.
SAVED_META = ("dataset_info.json", "state.json", "dataset_dict.json")


def is_saved_dataset(path: Path) -> bool:
    return any((path / name).is_file() for name in SAVED_META)


class DataFileTree(DirectoryTree):
    """Only folders and data files: the file picker for datasets."""

    def filter_paths(self, paths):
        return [p for p in paths if not p.name.startswith(".") and p.name not in SAVED_META
                and (p.is_dir() or p.suffix.lower() in DATA_SUFFIXES)]


class DataChecked(Message):
    def __init__(self, files: list[str], summary: str, problems: list[str]):
        super().__init__()
        self.files, self.summary, self.problems = files, summary, problems


class PreviewReady(Message):
    """check-data's report (None when it failed), or the reason it failed."""

    def __init__(self, files: list[str], report: dict | None, problem: str = ""):
        super().__init__()
        self.files, self.report, self.problem = files, report, problem


class AssistantSetWritten(Message):
    def __init__(self, path: str, problem: str = "", kept: bool = False):
        super().__init__()
        self.path, self.problem, self.kept = path, problem, kept


def check_files(files: list[str], fmt: str, estimate: bool = True) -> tuple[str, list[str]]:
    """(summary, problems) from the first QUICK_RECORDS records of each source; problems
    name file:line. ``estimate`` adds the records to expect (it may count a file's lines)."""
    from tunewiz.engine.contract.errors import DataError
    from tunewiz.engine.contract.formats import SampleStream
    from tunewiz.engine.contract.sources import HubPart, resolve

    local, hubs, problems = [], [], []
    for entry in files:
        try:
            sources = resolve(entry)  # cheap: paths are looked at, hub datasets are not loaded
        except DataError as e:
            problems.append(e.msg)
            continue
        (hubs if any(isinstance(p, HubPart) for s in sources for p in s.parts) else local).append(entry)
    parts = []
    if local and not problems:
        stream = SampleStream(local, fmt, head=QUICK_RECORDS)
        for _ in stream:
            pass
        problems = list(stream.problems.lines)
        if stream.problems.total > len(problems):
            problems.append(f"... and {stream.problems.total - len(problems)} more")
        if not stream.cut and not problems:
            try:
                stream.raise_if_problems()
            except DataError as e:
                problems.append(e.msg)
        kinds = ", ".join(sorted(set(stream.formats.values()))) or fmt
        dropped = f", {stream.filtered} dropped" if stream.filtered else ""
        if not stream.cut:
            parts.append(f"{stream.samples} samples · format {kinds}{dropped}")
        else:
            about = stream.rows_hint() if estimate else None
            parts.append(f"format {kinds} · the first {QUICK_RECORDS} records of each source are fine"
                         + (f" · about {about:,} records" if about else ""))
    parts += [f"hub dataset {h} (check-data loads it)" for h in hubs]
    return ("" if problems else " · ".join(parts)), problems


BAR_WIDTH = 24
TRAINED_STYLE, PROMPT_STYLE = "bold green", "dim"


def render_report(report: dict) -> list[Text]:
    """check-data's JSON as lines: totals, the length histogram, the first sample's spans."""
    n, max_length = report["samples"], report["max_length"]
    share = report["trained_tokens"] / max(report["tokens"], 1)
    lines = [Text(f"{report['tokens']:,} tokens, {report['trained_tokens']:,} trained ({share:.0%}) · "
                  f"{report['truncated']} of {n} cut at max_length {max_length}",
                  style="bold red" if report["truncated"] else "")]
    if report.get("no_loss"):
        lines.append(Text(f"{report['no_loss']} samples have no answer within {max_length} tokens", style="red"))
    lines.append(Text("tokens per sample (max_length is the last row):", style="bold"))
    buckets = report["length_histogram"]
    used = [i for i, b in enumerate(buckets) if b["count"]]
    peak = max((b["count"] for b in buckets), default=0) or 1
    # Empty buckets outside the samples' range say nothing, except the max_length row itself.
    for i, b in enumerate(buckets):
        if used and not used[0] <= i <= used[-1] and i != len(buckets) - 1:
            continue
        bar = "█" * max(1, round(BAR_WIDTH * b["count"] / peak)) if b["count"] else ""
        row = Text(f"{b['lo'] + 1:>6}-{b['hi']:<6}", style="dim")
        row.append(bar, style="red" if i == len(buckets) - 1 and report["truncated"] else "cyan")
        row.append(f" {b['count']}")
        lines.append(row)
    first = report["first_sample"]
    lines.append(Text(""))
    lines.append(Text.assemble(("first sample ", "bold"), (f"({first['source']}, {first['tokens']} tokens); ", ""),
                               ("trained", TRAINED_STYLE), (" / not trained:", PROMPT_STYLE)))
    sample = Text()
    for span in first["spans"]:
        sample.append(span["text"], style=TRAINED_STYLE if span["trained"] else PROMPT_STYLE)
    if first.get("truncated"):
        sample.append(f" … cut at {first['tokens']} tokens", style="bold red")
    lines.append(sample)
    return lines


def full_summary(report: dict) -> str:
    """check-data's counts over every record, in the quick check's words."""
    kinds = ", ".join(sorted(set(report.get("formats", {}).values()))) or "auto"
    dropped = f", {report['filtered']} dropped" if report.get("filtered") else ""
    return f"{report['samples']} samples · format {kinds}{dropped}"


def last_json_object(lines: list[str]) -> dict | None:
    """check-data prints its report as the last JSON line (warnings may come before it)."""
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


class DatasetStep(WizardStep):
    INDEX = 2
    ACTIONS = {"data-generate": "generate_set", "data-owner": "generate_set"}  # button, Enter in the name

    def compose_body(self) -> ComposeResult:
        data = self.state.config.data
        with Horizontal(id="data-path-row"):
            yield Input(", ".join(data.files), placeholder="data file(s), folder or hub id, comma separated",
                        id="data-path", compact=True)
            yield Select([(f, f) for f in FORMATS], value=data.format, allow_blank=False,
                         id="data-format", compact=True)
        with Horizontal(id="data-panes"):
            yield DataFileTree(".", id="data-tree")
            with Vertical(id="data-right"):
                yield Static(id="data-status")
                yield RichLog(id="data-preview", wrap=True, markup=False, max_lines=400, auto_scroll=False,
                              min_width=20)
        with Horizontal(id="data-generate-row"):
            yield Static("personal-assistant set for", classes="inline-label")
            yield Input(placeholder="your name", id="data-owner", compact=True)
            yield Button("write it", id="data-generate", compact=True)

    def on_mount(self) -> None:
        self.query_one("#data-path", Input).focus()
        self.schedule_check()

    def files(self) -> list[str]:
        return [f.strip() for f in self.query_one("#data-path", Input).value.split(",") if f.strip()]

    def fmt(self) -> str:
        return str(self.query_one("#data-format", Select).value)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "data-path":
            self.schedule_check()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.schedule_check()

    def schedule_check(self) -> None:
        # Typing a path fires on every key; check once the user pauses.
        if getattr(self, "_check_timer", None):
            self._check_timer.stop()
        self._check_timer = self.set_timer(0.3, self.start_check)

    def start_check(self) -> None:
        files = self.files()
        if not files:
            self.query_one("#data-status", Static).update("choose a data file (tab to the tree, or type a path)")
            return
        self.query_one("#data-status", Static).update("checking…")
        self.check_data(files, self.fmt())

    @work(thread=True, exclusive=True, group="data-check")
    def check_data(self, files: list[str], fmt: str) -> None:
        summary, problems = check_files(files, fmt)
        self.post_message(DataChecked(files, summary, problems))

    def on_data_checked(self, message: DataChecked) -> None:
        if message.files != self.files():
            return  # the user has typed on since
        status = self.query_one("#data-status", Static)
        preview = self.query_one("#data-preview", RichLog)
        preview.clear()
        if message.problems:
            status.update(f"[b red]{len(message.problems)} problem(s)[/]")
            for line in message.problems:
                preview.write(line)
            return
        self.summary = message.summary
        status.update(f"[b green]✓[/] {message.summary} · check-data checks them all with the model…")
        self.preview(message.files, self.fmt())

    @work(exclusive=True, group="data-preview")
    async def preview(self, files: list[str], fmt: str) -> None:
        data = self.state.config.data
        args = ["check-data", *files, "--format", fmt, "--model", self.state.config.model.path,
                "--max-length", str(data.max_length), "--stage", self.state.config.stage, "--json"]
        if data.template and data.template != "auto":
            args += ["--template", data.template]
        if data.system:
            args += ["--system", data.system]
        lines: list[str] = []
        try:
            async for line in self.app.engine.stream(*args):
                lines.append(line)
        except EngineCommandFailed as e:
            self.post_message(PreviewReady(files, None, f"check-data: {e.message}"))
            return
        except OSError as e:
            self.post_message(PreviewReady(files, None, f"check-data could not start: {e}"))
            return
        report = last_json_object(lines)
        self.post_message(PreviewReady(files, report, "" if report else "check-data printed no report"))

    def on_preview_ready(self, message: PreviewReady) -> None:
        if message.files != self.files():
            return
        preview = self.query_one("#data-preview", RichLog)
        if message.report is None:
            preview.write(Text(message.problem, style="red"))
            return
        self.query_one("#data-status", Static).update(
            f"[b green]✓[/] {full_summary(message.report)} · as the model sees it:")
        for line in render_report(message.report):
            preview.write(line)
        preview.scroll_home(animate=False)

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        path = event.path
        try:
            path = path.resolve().relative_to(Path.cwd())
        except ValueError:
            pass
        self.query_one("#data-path", Input).value = str(path)

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        # A save_to_disk folder is one dataset; other folders are only browsed (type one to use it).
        if is_saved_dataset(event.path):
            self.on_directory_tree_file_selected(event)

    def generate_set(self) -> None:
        name = self.query_one("#data-owner", Input).value.strip()
        if not name:
            self.say("[b red]type the name the assistant should belong to[/]")
            return
        self.say(styled(f"writing the assistant set for {name}…"))
        self.write_assistant_set(name)

    @work(thread=True, exclusive=True, group="data-generate")
    def write_assistant_set(self, name: str) -> None:
        # Torch-free and in-process: only this one file, and never over a file that holds
        # other data (the user's own set, an edited one): then it is written beside it.
        from tunewiz.engine.contract.samples import write_sample_datasets
        from tunewiz.engine.contract.errors import TunewizError

        notes: list[str] = []
        try:
            path = write_sample_datasets(Path("data"), name, kinds=("conversation",), say=notes.append)
        except TunewizError as e:
            self.post_message(AssistantSetWritten("", e.one_line()))
            return
        except OSError as e:
            self.post_message(AssistantSetWritten("", f"cannot write into data/ ({e.strerror or e})"))
            return
        self.post_message(AssistantSetWritten(str(path["conversation"]), kept=bool(notes)))

    def on_assistant_set_written(self, message: AssistantSetWritten) -> None:
        if message.problem:
            self.say(styled((message.problem, "bold red")))
            return
        note = " (data/assistant.json holds other data, left as it is)" if message.kept else ""
        self.say(styled((f"wrote {message.path}", "green"), note))
        self.query_one("#data-path", Input).value = message.path
        # The path may not have changed (the file was missing, or is rewritten): the check
        # and the preview must read the file as it is now, not keep what they last showed.
        self.schedule_check()
        self.query_one("#data-tree", DirectoryTree).reload()

    def store(self, strict: bool) -> None:
        data = self.state.config.data
        data.files = self.files()
        data.format = self.fmt()
        if not strict:
            return
        if not data.files:
            raise StepInvalid("choose a data file")
        _, problems = check_files(data.files, data.format, estimate=False)
        if problems:
            raise StepInvalid(problems[0])
