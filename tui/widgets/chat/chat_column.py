"""One conversation with one model: the transcript, streamed into, anchored at the bottom."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static


class Bubble(Static):
    DEFAULT_CSS = """
    Bubble { margin: 0 0 1 0; height: auto; }
    Bubble.user { color: $text-accent; text-style: bold; }
    Bubble.assistant { color: $text; }
    Bubble.problem { color: $error; }
    Bubble.note { color: $text-muted; text-style: italic; }
    """

    def __init__(self, text: str, role: str):
        super().__init__(text, classes=role, markup=False)
        self.text = text

    def add(self, piece: str) -> None:
        self.text += piece
        self.update(self.text)


class ChatColumn(Vertical):
    DEFAULT_CSS = """
    ChatColumn > .chat-column-title { height: 1; background: $panel; padding: 0 1; }
    ChatColumn > VerticalScroll { height: 1fr; padding: 0 1; }
    """

    def __init__(self, title: str, **kwargs):
        super().__init__(**kwargs)
        self.title = title
        self.history: list[dict] = []

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="chat-column-title", markup=False)
        yield VerticalScroll(classes="chat-transcript")

    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one(".chat-transcript", VerticalScroll)

    def set_title(self, text: str) -> None:
        self.query_one(".chat-column-title", Static).update(text)

    def add_bubble(self, text: str, role: str) -> Bubble:
        bubble = Bubble(text, role)
        self.transcript.mount(bubble)
        self.transcript.anchor()  # follow new text while the reader stays at the bottom
        return bubble

    def clear(self) -> None:
        self.history = []
        self.transcript.remove_children()
