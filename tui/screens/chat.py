"""Chat: streamed answers, multi-turn, system prompt, sampling settings, clear; one model, or
the base and the fine-tuned model side by side answering the same prompt.

Two modes: chat (the chat template, multi-turn) and raw (the text is continued as-is, each
turn on its own: how a pretrain run is checked, so its default there). The status line
says which one is on; ctrl+r switches.

Each model runs in its own chat server subprocess (torch stays out of this process). The
screen keeps the conversation and sends the whole history with every request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from ..services.chat_client import ChatClient, ChatServerError, ChatTarget, Sampling
from ..services.chat_targets import chat_targets, run_stage
from ..widgets.chat.chat_column import Bubble, ChatColumn
from ..widgets.form import FieldRow


class ServerReady(Message):
    def __init__(self, column: int, problem: str = ""):
        super().__init__()
        self.column, self.problem = column, problem


class ReplyPiece(Message):
    def __init__(self, column: int, piece: str):
        super().__init__()
        self.column, self.piece = column, piece


class ReplyEnded(Message):
    def __init__(self, column: int, problem: str = ""):
        super().__init__()
        self.column, self.problem = column, problem


class ChatScreen(Screen):
    BINDINGS = [
        # Short words: every key must fit one 80-column footer.
        Binding("escape", "leave", "leave"),
        Binding("ctrl+o", "toggle_settings", "settings"),
        Binding("ctrl+l", "clear", "clear"),
        Binding("ctrl+t", "next_model", "model"),
        # priority: the focused Input would otherwise take ctrl+x as "cut" (and hide it here).
        Binding("ctrl+x", "stop_answer", "stop", priority=True),
        Binding("ctrl+r", "toggle_raw", "raw/chat"),
    ]

    def __init__(self, run: Path | None = None, side_by_side: bool = False):
        super().__init__()
        self.run = run
        self.side_by_side = side_by_side
        self.tuned, self.base = chat_targets(run)
        self.tuned_index = 0
        self.clients: list[ChatClient | None] = []
        self.ready: list[bool] = []
        self.failed: set[int] = set()  # columns whose model will not load
        self.answering: set[int] = set()
        # A question typed while a model is still loading waits here, then goes to every
        # column at once: side by side, both histories must start with the same question.
        self.pending: str | None = None
        self.raw = run_stage(run) == "pretrain"

    def targets(self) -> list[ChatTarget | None]:
        tuned = self.tuned[self.tuned_index] if self.tuned else None
        if self.side_by_side:
            return [self.base, tuned]
        return [tuned or self.base]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="chat-status")
        with Vertical(id="chat-settings"):
            yield FieldRow("system prompt", Input(id="chat-system", compact=True))
            start = Sampling()
            yield FieldRow("temperature", Input(f"{start.temperature:g}", id="chat-temperature", compact=True),
                           "0 = greedy")
            yield FieldRow("top p", Input(f"{start.top_p:g}", id="chat-top-p", compact=True))
            yield FieldRow("max new tokens", Input(str(start.max_new_tokens), id="chat-max-new", compact=True))
        with Horizontal(id="chat-columns"):
            for i, target in enumerate(self.targets()):
                yield ChatColumn(target.label if target else "fine-tuned: none yet",
                                 classes="second" if i else "")
        yield Input(placeholder=self.placeholder(), id="chat-input")
        yield Footer(compact=True)

    def placeholder(self) -> str:
        return "text to continue · enter sends" if self.raw else "message · enter sends"

    def on_mount(self) -> None:
        self.query_one("#chat-input", Input).focus()
        self.start_servers()

    def columns(self) -> list[ChatColumn]:
        return list(self.query(ChatColumn))

    def loading(self) -> bool:
        """A column's model is neither loaded nor failed yet."""
        return any(not ready and i not in self.failed for i, ready in enumerate(self.ready))

    def set_status(self) -> None:
        states = ["mode: raw (your text is continued, no template)" if self.raw else "mode: chat"]
        for i, (target, ready) in enumerate(zip(self.targets(), self.ready)):
            if target is not None:
                state = "ready" if ready else "failed" if i in self.failed else "loading…"
                states.append(f"{target.label}: {state}")
        if self.pending is not None:
            states.append("your question is sent once the models have loaded")
        self.query_one("#chat-status", Static).update(Content(" · ".join(states)))

    @work(exclusive=True, group="chat-servers")
    async def start_servers(self) -> None:
        await self.close_clients()
        targets = self.targets()
        self.clients = [ChatClient(t) if t else None for t in targets]
        self.ready = [False] * len(targets)
        self.failed = set()
        self.set_status()
        for i, target in enumerate(targets):
            if target is None:
                self.post_message(ServerReady(i, "no fine-tuned model yet: convert & merge the run first"))

        async def start(i: int, client: ChatClient) -> None:
            try:
                await client.start()
                self.post_message(ServerReady(i))
            except (ChatServerError, OSError) as e:
                self.post_message(ServerReady(i, e.one_line() if isinstance(e, ChatServerError) else str(e)))

        await asyncio.gather(*(start(i, c) for i, c in enumerate(self.clients) if c is not None))

    def on_server_ready(self, message: ServerReady) -> None:
        column = self.columns()[message.column]
        if message.problem:
            column.add_bubble(message.problem, "problem")
            self.failed.add(message.column)
        else:
            self.ready[message.column] = True
        if self.pending is not None and not self.loading():
            text, self.pending = self.pending, None
            self.ask(text)
        self.set_status()

    def sampling(self) -> Sampling:
        def number(selector: str, kind, default):
            try:
                return kind(self.query_one(selector, Input).value)
            except ValueError:
                return default

        start = Sampling()  # what a field that is no number falls back to
        return Sampling(max_new_tokens=number("#chat-max-new", int, start.max_new_tokens),
                        temperature=number("#chat-temperature", float, start.temperature),
                        top_p=number("#chat-top-p", float, start.top_p))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "chat-input":
            self.query_one("#chat-input", Input).focus()
            return
        text = event.value.strip()
        if not text:
            return
        if self.answering:
            self.notify("still answering: wait, or ctrl+x to stop it")
            return
        if self.pending is not None:
            self.notify("a question is already waiting for the models to load")
            return
        event.input.value = ""
        if self.loading():
            self.pending = text
            self.set_status()
            return
        self.ask(text)

    def ask(self, text: str) -> None:
        """Send text to every column whose model is loaded."""
        system = self.query_one("#chat-system", Input).value.strip()
        for i, column in enumerate(self.columns()):
            if not self.ready[i]:
                continue
            column.add_bubble(text, "user")
            column.history.append({"role": "user", "content": text})
            column.add_bubble("", "assistant")
            if self.raw:  # each turn stands alone: no system prompt, no history
                messages = column.history[-1:]
            else:
                messages = ([{"role": "system", "content": system}] if system else []) + column.history
            self.answering.add(i)
            self.answer(i, messages, self.sampling(), self.raw)

    @work(group="chat-answers")
    async def answer(self, column: int, messages: list[dict], sampling: Sampling, raw: bool) -> None:
        client = self.clients[column]
        try:
            async for piece in client.ask(messages, sampling, raw):
                self.post_message(ReplyPiece(column, piece))
            self.post_message(ReplyEnded(column))
        except ChatServerError as e:
            self.post_message(ReplyEnded(column, e.one_line()))

    def last_bubble(self, column: int) -> Bubble:
        return self.columns()[column].query(Bubble).last()

    def on_reply_piece(self, message: ReplyPiece) -> None:
        self.last_bubble(message.column).add(message.piece)

    def on_reply_ended(self, message: ReplyEnded) -> None:
        self.answering.discard(message.column)
        column = self.columns()[message.column]
        bubble = self.last_bubble(message.column)
        if message.problem:
            bubble.remove()
            column.add_bubble(message.problem, "problem")
            column.history.pop()  # the question got no answer: do not send it again
            return
        column.history.append({"role": "assistant", "content": bubble.text})

    def action_toggle_settings(self) -> None:
        panel = self.query_one("#chat-settings")
        panel.toggle_class("open")
        if panel.has_class("open"):
            self.query_one("#chat-system", Input).focus()
        else:
            self.query_one("#chat-input", Input).focus()

    def action_clear(self) -> None:
        self.pending = None
        for column in self.columns():
            column.clear()
        self.set_status()

    def action_toggle_raw(self) -> None:
        if self.answering:
            self.notify("still answering: wait, or ctrl+x to stop it")
            return
        self.raw = not self.raw
        note = ("raw: what you type is continued as-is, without the chat template; each turn stands alone"
                if self.raw else "chat: the chat template; a new conversation starts here")
        for column in self.columns():
            # What was said in the other mode is no context for this one.
            column.history = []
            column.add_bubble(note, "note")
        self.query_one("#chat-input", Input).placeholder = self.placeholder()
        self.set_status()

    def action_next_model(self) -> None:
        if len(self.tuned) < 2:
            self.notify("only one fine-tuned model for this run")
            return
        self.tuned_index = (self.tuned_index + 1) % len(self.tuned)
        self.pending = None  # the columns start over with the new model
        for column, target in zip(self.columns(), self.targets()):
            column.clear()
            column.set_title(target.label if target else "fine-tuned: none yet")
        self.start_servers()

    async def action_stop_answer(self) -> None:
        for i in list(self.answering):
            if (client := self.clients[i]) is not None:
                await client.cancel()

    async def close_clients(self) -> None:
        clients, self.clients = [c for c in self.clients if c is not None], []
        await asyncio.gather(*(c.close() for c in clients))

    async def action_leave(self) -> None:
        await self.close_clients()
        self.dismiss()

    async def on_unmount(self) -> None:
        await self.close_clients()
