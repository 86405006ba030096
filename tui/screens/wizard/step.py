"""The frame every wizard step shares: step trail, body, back / next, and the keys."""

from __future__ import annotations


from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static

from textual.content import Content

from ...formatting import styled
from .state import STEP_NAMES, WizardState


class StepInvalid(Exception):
    """Raised by ``store`` when what is on screen cannot go into the config; says why."""


class WizardStep(Screen[str]):
    """Dismisses with "next", "back" or "cancel"; ``store`` copies the fields into the state
    on the way out in both directions, so going back and forth keeps what was entered."""

    INDEX = 0
    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("ctrl+n", "next", "next"),
        Binding("ctrl+c", "cancel", "cancel", show=False),
    ]

    def __init__(self, state: WizardState):
        super().__init__()
        self.state = state

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.trail(), classes="step-trail")
        with Vertical(classes="step-body"):
            yield from self.compose_body()
        with Horizontal(classes="step-buttons"):
            yield Button("← back", id="step-back")
            yield Static(classes="step-message")
            yield Button(self.next_label(), id="step-next", variant="primary")
        yield Footer(compact=True)

    def trail(self) -> str:
        parts = []
        for i, name in enumerate(STEP_NAMES):
            label = f"{i + 1} {name}"
            parts.append(f"[b reverse] {label} [/]" if i == self.INDEX else f"[dim]{label}[/]")
        return " › ".join(parts)

    def next_label(self) -> str:
        return "next →"

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError

    def store(self, strict: bool) -> None:
        """Copy widget values into self.state; raise StepInvalid (only when strict) to stay."""

    def say(self, text: str | Content) -> None:
        """Show a line under the step: markup for our own words, Text for anything quoted."""
        self.query_one(".step-message", Static).update(text)

    def action_next(self) -> None:
        try:
            self.store(strict=True)
        except StepInvalid as e:
            self.say(styled((str(e), "bold red")))
            return
        self.dismiss("next")

    def action_back(self) -> None:
        try:
            self.store(strict=False)
        except StepInvalid:
            pass
        self.dismiss("back")

    def action_cancel(self) -> None:
        self.dismiss("cancel")

    # A step's own buttons, and fields where Enter does something other than "next":
    # widget id -> name of the method to call. Textual calls on_* handlers of every class
    # in the MRO, so steps declare these instead of overriding the handlers below.
    ACTIONS: dict[str, str] = {}

    def _run_action(self, widget_id: str | None) -> bool:
        method = self.ACTIONS.get(widget_id or "")
        if method is None:
            return False
        getattr(self, method)()
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if self._run_action(event.button.id):
            event.stop()
        elif event.button.id == "step-next":
            event.stop()
            self.action_next()
        elif event.button.id == "step-back":
            event.stop()
            self.action_back()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Enter in any field moves on: pressing Enter through the wizard trains with defaults.
        event.stop()
        if not self._run_action(event.input.id):
            self.action_next()


def parse_number(text: str, kind: type, name: str, optional: bool = False):
    text = text.strip()
    if not text and optional:
        return None
    try:
        value = kind(float(text)) if kind is int and "e" in text.lower() else kind(text)
    except ValueError:
        raise StepInvalid(f"{name}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None
    return value
