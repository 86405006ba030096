"""Step 1, Model: the demo model, local folders found in the usual places, or a typed path.

A typed path may also name a config file, an XTuner .py or a tunewiz .yaml: Enter then
fills every step from it (as `tunewiz new FILE` does) and stays here, showing the model the
file names, so it can be checked or replaced before going on."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Checkbox, Input, OptionList, Static
from textual.widgets.option_list import Option

from tunewiz.engine.contract.errors import TunewizError

from ...formatting import styled
from ...services.model_folders import DEMO, DEMO_LABEL, find_model_folders, read_model_facts
from .state import looks_like_start_file, read_start_file
from .step import StepInvalid, WizardStep


class FoldersFound(Message):
    def __init__(self, folders: list[str]):
        super().__init__()
        self.folders = folders


class ModelStep(WizardStep):
    INDEX = 0
    # Focus the path from the start: Textual's default focuses the list first, whose first
    # highlight (the demo) would then count as a pick and replace a path the wizard was given.
    AUTO_FOCUS = "#model-path"

    def compose_body(self) -> ComposeResult:
        model = self.state.config.model
        with Horizontal(id="model-panes"):
            with Vertical(id="model-left"):
                yield Static("Base model", classes="section-title")
                yield OptionList(Option(DEMO_LABEL, id=DEMO), id="model-list")
                yield Input(model.path, placeholder="or type a model folder (or an XTuner .py / .yaml config)", id="model-path", compact=True)
            with Vertical(id="model-right"):
                yield Static("About this model", classes="section-title")
                yield Static(id="model-facts", markup=False)
                yield Checkbox("trust remote code", model.trust_remote_code, id="model-remote")
                yield Static(id="model-warning")

    def on_mount(self) -> None:
        self.query_one("#model-path", Input).focus()
        self.show_facts(self.state.config.model.path)
        self.find_folders()

    @work(thread=True)
    def find_folders(self) -> None:
        self.post_message(FoldersFound([str(p) for p in find_model_folders()]))

    def on_folders_found(self, message: FoldersFound) -> None:
        options = self.query_one("#model-list", OptionList)
        for folder in message.folders:
            options.add_option(Option(Content(folder), id=folder))  # a folder name is no markup

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # Only a user moving through the list picks a model (not the list's first highlight).
        if event.option.id and event.option_list.has_focus:
            self.query_one("#model-path", Input).value = event.option.id

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_next()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "model-path":
            self.show_facts(event.value.strip())

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.show_facts(self.query_one("#model-path", Input).value.strip())

    def show_facts(self, path: str) -> None:
        if not path:
            self.query_one("#model-facts", Static).update("type a folder that holds config.json")
            return
        if looks_like_start_file(path):
            self.query_one("#model-facts", Static).update(
                "a config file: Enter fills every step from it (the model it names comes here)")
            self.query_one("#model-warning", Static).update("")
            return
        facts = read_model_facts(path)
        self.query_one("#model-facts", Static).update(facts.describe())
        trusted = self.query_one("#model-remote", Checkbox).value
        warning = ""
        if facts.needs_remote_code and not trusted:
            warning = "[b yellow]This model runs its own Python code. Tick the box only if you trust it.[/]"
        elif trusted:
            warning = "[b red]Remote code is ON: the folder's Python files will run.[/]"
        self.query_one("#model-warning", Static).update(warning)

    def action_next(self) -> None:
        path = self.query_one("#model-path", Input).value.strip()
        if looks_like_start_file(path):
            self.fill_from(path)
            return
        super().action_next()

    def fill_from(self, path: str) -> None:
        try:
            source = read_start_file(path)
        except TunewizError as e:
            self.say(styled((e.one_line(), "bold red")))
            return
        self.state.start_from(source)
        model = self.state.config.model
        self.query_one("#model-remote", Checkbox).value = model.trust_remote_code
        self.query_one("#model-path", Input).value = model.path
        self.say(styled(("filled from ", "green"), (source.summary(), "green"), " · Enter goes on"))

    def store(self, strict: bool) -> None:
        path = self.query_one("#model-path", Input).value.strip()
        trusted = self.query_one("#model-remote", Checkbox).value
        self.state.config.model.path = path
        self.state.config.model.trust_remote_code = trusted
        if not strict:
            return
        if not path:
            raise StepInvalid("choose a model")
        facts = read_model_facts(path)
        if facts.problem:
            raise StepInvalid(facts.problem)
        if facts.needs_remote_code and not trusted:
            raise StepInvalid("this model needs trust remote code: tick it, or pick another model")
