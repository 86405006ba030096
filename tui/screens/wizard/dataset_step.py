"""Step 3, Dataset: pick a JSON/JSONL file, see it validated, and preview what the model sees.

Validation runs in-process with the engine's torch-free reader (instant, errors with
file:line); the rendered preview and token histogram need the tokenizer, so they come
from `tunewiz check-data` in a subprocess and are shown as it prints them.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DirectoryTree, Input, RichLog, Select, Static

from tunewiz.engine.config import FORMATS

from ...services.engine_cli import EngineCommandFailed
from .step import StepInvalid, WizardStep

DATA_SUFFIXES = (".json", ".jsonl")


class DataFileTree(DirectoryTree):
    """Only folders and JSON/JSONL files: the file picker for datasets."""

    def filter_paths(self, paths):
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.suffix.lower() in DATA_SUFFIXES)]


class DataChecked(Message):
    def __init__(self, files: list[str], summary: str, problems: list[str]):
        super().__init__()
        self.files, self.summary, self.problems = files, summary, problems


class PreviewLine(Message):
    def __init__(self, line: str):
        super().__init__()
        self.line = line


class AssistantSetWritten(Message):
    def __init__(self, path: str, problem: str = ""):
        super().__init__()
        self.path, self.problem = path, problem


def check_files(files: list[str], fmt: str) -> tuple[str, list[str]]:
    """(summary, problems) from the engine's reader; problems name file:line."""
    from tunewiz.engine.errors import DataError
    from tunewiz.engine.formats import load_samples

    try:
        loaded = load_samples(files, fmt)
    except DataError as e:
        return "", list(getattr(e, "problems", None) or [e.msg])
    kinds = ", ".join(sorted(set(loaded.formats.values()))) or fmt
    dropped = f", {loaded.filtered} dropped" if loaded.filtered else ""
    return f"{len(loaded.samples)} samples · format {kinds}{dropped}", []


class DatasetStep(WizardStep):
    INDEX = 2

    def compose_body(self) -> ComposeResult:
        data = self.state.config.data
        with Horizontal(id="data-path-row"):
            yield Input(", ".join(data.files), placeholder="data file(s), comma separated",
                        id="data-path", compact=True)
            yield Select([(f, f) for f in FORMATS], value=data.format, allow_blank=False,
                         id="data-format", compact=True)
        with Horizontal(id="data-panes"):
            yield DataFileTree(".", id="data-tree")
            with Vertical(id="data-right"):
                yield Static(id="data-status")
                yield RichLog(id="data-preview", wrap=True, markup=False, max_lines=400)
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
        status.update(f"[b green]✓[/] {message.summary} · preview from check-data below")
        self.preview(message.files, self.fmt())

    @work(exclusive=True, group="data-preview")
    async def preview(self, files: list[str], fmt: str) -> None:
        data = self.state.config.data
        args = ["check-data", *files, "--format", fmt, "--model", self.state.config.model.path,
                "--max-length", str(data.max_length), "--stage", self.state.config.stage]
        if data.system:
            args += ["--system", data.system]
        try:
            async for line in self.app.engine.stream(*args):
                self.post_message(PreviewLine(line))
        except EngineCommandFailed as e:
            self.post_message(PreviewLine(f"check-data: {e.message}"))
        except OSError as e:
            self.post_message(PreviewLine(f"check-data could not start: {e}"))

    def on_preview_line(self, message: PreviewLine) -> None:
        self.query_one("#data-preview", RichLog).write(message.line)

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        path = event.path
        try:
            path = path.resolve().relative_to(Path.cwd())
        except ValueError:
            pass
        self.query_one("#data-path", Input).value = str(path)

    def button_pressed(self, button: Button) -> bool:
        if button.id == "data-generate":
            self.generate_set()
            return True
        return False

    def input_submitted(self, field: Input) -> bool:
        if field.id == "data-owner":
            self.generate_set()
            return True
        return False

    def generate_set(self) -> None:
        name = self.query_one("#data-owner", Input).value.strip()
        if not name:
            self.say("[b red]type the name the assistant should belong to[/]")
            return
        self.say(f"writing the assistant set for {name}…")
        self.write_assistant_set(name)

    @work(exclusive=True, group="data-generate")
    async def write_assistant_set(self, name: str) -> None:
        try:
            async for _ in self.app.engine.stream("demo", "--dest", "data", "--name", name, "--quiet"):
                pass
        except (EngineCommandFailed, OSError) as e:
            self.post_message(AssistantSetWritten("", getattr(e, "message", str(e))))
            return
        self.post_message(AssistantSetWritten("data/assistant.json"))

    def on_assistant_set_written(self, message: AssistantSetWritten) -> None:
        if message.problem:
            self.say(f"[b red]{message.problem}[/]")
            return
        self.say(f"[green]wrote {message.path}[/]")
        self.query_one("#data-path", Input).value = message.path
        self.query_one("#data-tree", DirectoryTree).reload()

    def store(self, strict: bool) -> None:
        data = self.state.config.data
        data.files = self.files()
        data.format = self.fmt()
        if not strict:
            return
        if not data.files:
            raise StepInvalid("choose a data file")
        missing = [f for f in data.files if not Path(f).is_file()]
        if missing:
            raise StepInvalid(f"{missing[0]}: no such file")
        _, problems = check_files(data.files, data.format)
        if problems:
            raise StepInvalid(problems[0])
