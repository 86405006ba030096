"""Form rows for the wizard: a label, an input, and the schema's own help text beside it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Label, Static


class FieldRow(Horizontal):
    """One setting: label (fixed width), the control, and a dim help text."""

    DEFAULT_CSS = """
    FieldRow { height: auto; margin: 0 0 0 0; }
    FieldRow > .field-label { width: 16; padding: 0 1 0 0; text-align: right; }
    FieldRow > Input, FieldRow > Select { width: 1fr; max-width: 40; }
    FieldRow > Checkbox { width: auto; }
    FieldRow > .field-help { width: 1fr; height: 1; padding: 0 0 0 1; color: $text-muted; }
    """

    def __init__(self, label: str, control: Widget, help_text: str = "", **kwargs):
        super().__init__(**kwargs)
        self.label = label
        self.control = control
        self.help_text = help_text

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="field-label")
        yield self.control
        if self.help_text:
            yield Static(self.help_text, classes="field-help", markup=False)
