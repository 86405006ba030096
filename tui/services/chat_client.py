"""The TUI's side of the chat server: a subprocess speaking JSON lines (see
engine/chat_server.py). One answer at a time per server; side by side uses two servers."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator

from tunewiz.engine.contract.chat_options import DEFAULTS, ChatOptions


class ChatServerError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


@dataclass
class ChatTarget:
    """What to load: a model folder (or "demo"), optionally with an adapter on top."""

    label: str
    model: str
    adapter: str | None = None
    template: str | None = None

    def argv(self, python: str = sys.executable) -> list[str]:
        options = ChatOptions(model=self.model, adapter=self.adapter or None, template=self.template or None)
        return [python, "-m", "tunewiz.engine.chat_server", options.to_json()]


@dataclass
class Sampling:
    """What each request may set; it starts from the chat options' defaults."""

    max_new_tokens: int = DEFAULTS["max_new_tokens"]
    temperature: float = DEFAULTS["temperature"]
    top_p: float = DEFAULTS["top_p"]


@dataclass
class ChatClient:
    target: ChatTarget
    proc: asyncio.subprocess.Process | None = None
    stderr_tail: deque = field(default_factory=lambda: deque(maxlen=20))
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _current: int | None = None

    async def start(self) -> dict:
        """Start the server and wait until the model is loaded; returns its ready line."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = await asyncio.create_subprocess_exec(
            *self.target.argv(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, limit=1 << 20)
        # Drain stderr (loading bars, warnings): an unread pipe would stall the server.
        asyncio.get_running_loop().create_task(self._drain_stderr())
        msg = await self._next_message()
        if msg.get("ready"):
            return msg
        raise ChatServerError(msg.get("error", "the chat server did not start"), msg.get("hint", ""))

    async def _drain_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        while line := await self.proc.stderr.readline():
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    async def _next_message(self) -> dict:
        assert self.proc and self.proc.stdout
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                await self.proc.wait()
                await asyncio.sleep(0.1)  # let the stderr drain catch the last words
                last = next((ln for ln in reversed(self.stderr_tail) if ln.strip()), "")
                raise ChatServerError(f"the chat server exited (code {self.proc.returncode})",
                                      last[-200:])
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # a library printed to stdout; not ours
            if isinstance(msg, dict):
                return msg

    async def _send(self, obj: dict) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write((json.dumps(obj, ensure_ascii=False) + "\n").encode())
        await self.proc.stdin.drain()

    async def ask(self, messages: list[dict], sampling: Sampling, raw: bool = False) -> AsyncIterator[str]:
        """Yield the answer's pieces as they are generated; raw: the continuation of the last
        message's text, without the chat template."""
        rid = next(self._ids)
        self._current = rid
        await self._send({"id": rid, "messages": messages, "max_new_tokens": sampling.max_new_tokens,
                          "temperature": sampling.temperature, "top_p": sampling.top_p, "raw": raw})
        try:
            while True:
                msg = await self._next_message()
                if msg.get("id") != rid:
                    continue  # the tail of an answer that was cancelled
                if "delta" in msg:
                    yield msg["delta"]
                elif msg.get("error"):
                    raise ChatServerError(msg["error"], msg.get("hint", ""))
                elif msg.get("done"):
                    return
        finally:
            self._current = None

    async def cancel(self) -> None:
        if self._current is not None and self.proc and self.proc.returncode is None:
            await self._send({"cancel": self._current})

    async def close(self) -> None:
        if self.proc and self.proc.returncode is None:
            try:
                self.proc.stdin.close()  # the server exits when its stdin closes...
                await asyncio.wait_for(self.proc.wait(), 1)  # ...unless it is still loading
            except (asyncio.TimeoutError, BrokenPipeError, ConnectionResetError):
                try:
                    self.proc.kill()
                except ProcessLookupError:  # it ended on its own after the wait gave up
                    pass
                await self.proc.wait()
