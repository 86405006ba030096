"""Step 2, Preset: a recipe from presets/, with its key settings editable."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Checkbox, Input, OptionList, Static
from textual.widgets.option_list import Option

from tunewiz.engine.contract.config import check_name, field_docs, get_key, set_key
from tunewiz.engine.contract.errors import ConfigError

from ...formatting import styled
from ...services.gpus import detect_gpus
from ...widgets.form import FieldRow
from .cuda_fit import cuda_problem
from .state import FROM_FILE, preset_description, preset_files
from .step import StepInvalid, WizardStep, parse_number

# (dotted key, label, kind): the settings users change most, in the order they think of them.
KEY_SETTINGS = [
    ("name", "run name", str),
    ("train.epochs", "epochs", float),
    ("train.max_steps", "max steps", "optional_int"),
    ("train.lr", "learning rate", float),
    ("train.batch_size", "batch size", int),
    ("train.grad_accum", "grad accum", int),
    ("data.max_length", "max length", int),
    ("data.pack", "packing", bool),
    ("lora.r", "LoRA r", int),
    ("lora.alpha", "LoRA alpha", int),
    ("eval.inputs", "eval prompts", "prompts"),
    ("eval.every", "eval every", int),
    ("data.system", "system prompt", str),
]
PROMPT_SEPARATOR = " | "


def widget_id(key: str) -> str:
    return "set-" + key.replace(".", "-")


class GpusKnown(Message):
    def __init__(self, gpus: list):
        super().__init__()
        self.gpus = gpus


class PresetStep(WizardStep):
    INDEX = 1
    gpus: list | None = None            # None until nvidia-smi has answered

    def compose_body(self) -> ComposeResult:
        self.presets: dict[str, Path] = {p.stem: p for p in preset_files()}
        options = [Option(stem, id=stem) for stem in self.presets]
        if not options:
            options = [Option("defaults (LoRA, SFT)", id="")]
        if self.state.source is not None:   # the file the wizard started from is a recipe too
            self.presets[FROM_FILE] = self.state.source.path
            options.insert(0, Option(Content(f"from {self.state.source.path.name}"), id=FROM_FILE))
        docs = field_docs()
        with Horizontal(id="preset-panes"):
            yield OptionList(*options, id="preset-list")
            # The form scrolls, but Tab goes to its fields, not to the scroll container.
            with VerticalScroll(id="preset-form", can_focus=False):
                yield Static(id="preset-method", classes="section-title")
                yield Static(id="preset-about", classes="preset-about")
                yield Static(id="preset-warning")
                for key, label, kind in KEY_SETTINGS:
                    control = Checkbox("", id=widget_id(key)) if kind is bool else Input(id=widget_id(key), compact=True)
                    yield FieldRow(label, control, docs.get(key, ""), id=f"row-{widget_id(key)}")

    def on_mount(self) -> None:
        options = self.query_one("#preset-list", OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        if self.state.preset in ids:
            options.highlighted = ids.index(self.state.preset)
        self.fill_form()
        options.focus()
        self.detect()

    @work(thread=True)
    def detect(self) -> None:
        self.post_message(GpusKnown(detect_gpus()))

    def on_gpus_known(self, message: GpusKnown) -> None:
        self.gpus = message.gpus
        self.show_warning()

    def show_warning(self) -> None:
        problem = cuda_problem(self.state.config, self.gpus)
        warning = self.query_one("#preset-warning", Static)
        warning.display = bool(problem)
        warning.update(styled(("no GPU on this machine: ", "bold yellow"), (problem, "bold yellow")))

    def fill_form(self) -> None:
        cfg = self.state.config
        self.query_one("#preset-method", Static).update(
            Content(f"{cfg.method.upper()} · {cfg.stage}  ({self.state.preset_label()})"))
        path = self.presets.get(self.state.preset)
        about = (Content(self.state.source.summary()) if self.state.preset == FROM_FILE and self.state.source
                 else preset_description(path) if path else "")
        self.query_one("#preset-about", Static).update(about)
        for key, _, kind in KEY_SETTINGS:
            value = get_key(cfg, key)
            widget = self.query_one(f"#{widget_id(key)}")
            if kind is bool:
                widget.value = bool(value)
            elif kind == "prompts":
                widget.value = PROMPT_SEPARATOR.join(value)
            else:
                widget.value = "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        for key in ("lora.r", "lora.alpha"):
            self.query_one(f"#row-{widget_id(key)}").display = cfg.method != "full"
        self.show_warning()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # A stale highlight (the list's own first one, before on_mount moved it) is ignored.
        if event.option_index != event.option_list.highlighted:
            return
        stem = event.option.id or ""
        if stem != self.state.preset:
            self.store(strict=False, quiet=True)
            self.state.apply_preset(self.presets.get(stem))
            self.fill_form()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_next()

    def store(self, strict: bool, quiet: bool = False) -> None:
        cfg = self.state.config
        for key, label, kind in KEY_SETTINGS:
            widget = self.query_one(f"#{widget_id(key)}")
            try:
                if kind is bool:
                    value = widget.value
                elif kind == "prompts":
                    value = [p.strip() for p in widget.value.split("|") if p.strip()]
                elif kind is str:
                    value = widget.value.strip()
                    if key == "name":
                        try:
                            check_name(value)   # the config's own rule, not a copy of it
                        except ConfigError as e:
                            raise StepInvalid(f"{e.msg}; {e.hint}") from None
                elif kind == "optional_int":
                    value = parse_number(widget.value, int, label, optional=True)
                else:
                    value = parse_number(widget.value, kind, label)
                    if kind is int and value < (0 if key == "eval.every" else 1):
                        raise StepInvalid(f"{label}: must be at least 1")
            except StepInvalid:
                if strict:
                    raise
                continue
            set_key(cfg, key, value)
