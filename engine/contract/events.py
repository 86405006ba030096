"""The event schema: one JSON object per line in ``<run>/events.jsonl``. Torch-free.

The engine appends (rank 0 only), flushing every line; the TUI and ``tunewiz runs`` read.
Every event has ``v`` (schema version), ``t`` (unix time) and ``type``. Types may be
added, never renamed. The reader skips torn or malformed lines and unknown types, and
reads incrementally from a byte offset so following a 100k-step run stays cheap.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from . import faults

VERSION = 1

# type -> fields every event of that type carries (besides v, t, type).
SCHEMA: dict[str, tuple[str, ...]] = {
    "start": ("name", "config", "world_size", "total_steps", "model", "params", "trainable_params"),
    "step": ("step", "total", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "mem_gib", "eta_s"),
    "eval": ("step", "samples"),
    "checkpoint": ("step", "path"),
    "progress": ("phase", "done", "total"),
    "log": ("level", "msg"),
    "error": ("kind", "msg", "hint"),
    "done": ("status", "path"),
}
# Fields some events carry beyond SCHEMA (readers must not rely on them: older runs lack them).
# step: `tokens` (every token of the step's rows on all ranks, padding excluded),
# `trained_tokens` (the targets the loss was taken on) and `trained_tokens_per_s`.
# `tokens_per_s` and `trained_tokens_per_s` are wall-clock rates: the step is timed from its
# start to the end of its host sync, when the GPU has finished it.
OPTIONAL: dict[str, tuple[str, ...]] = {
    "step": ("tokens", "trained_tokens", "trained_tokens_per_s"),
    # long phases (tokenizing) say what they count, how fast, and how long is left
    "progress": ("unit", "rate", "eta_s"),
}
# disk: the disk or quota holding the run is full; checkpoint: a checkpoint file that is
# damaged or not plain data (it is never executed).
ERROR_KINDS = ("data", "model", "oom", "config", "distributed", "internal", "disk", "checkpoint")


def make_event(type_: str, **fields_: Any) -> dict:
    if type_ not in SCHEMA:
        raise ValueError(f"unknown event type {type_!r}")
    missing = [k for k in SCHEMA[type_] if k not in fields_]
    if missing:
        raise ValueError(f"{type_} event lacks {', '.join(missing)}")
    return {"v": VERSION, "t": time.time(), "type": type_, **fields_}


class EventWriter:
    """Appends events to a file, one line per write(2) on an O_APPEND descriptor (readers
    may be live, and a kill leaves at most one torn last line). A file whose last line is
    torn (a kill or a full disk mid-line) gets a newline first, so the torn fragment never
    swallows the next event. A failed write raises DiskFullError (or the OSError); the line
    after it starts on a new line again."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._newline_first = _ends_torn(self._fd)

    def emit(self, type_: str, **fields_: Any) -> dict:
        ev = make_event(type_, **fields_)
        text = json.dumps(ev, ensure_ascii=False, default=str)
        try:
            line = (text + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (from bad data): escaped, still one line
            line = (json.dumps(ev, default=str) + "\n").encode("ascii")
        if self._newline_first:
            line = b"\n" + line
        if faults.hit("events.torn"):  # fault injection: die with half a line on disk
            os.write(self._fd, line[: len(line) // 2])
            faults.die()
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self._newline_first = True
            from .errors import disk_full, is_disk_full

            if is_disk_full(e):
                raise disk_full(self.path, f"`tunewiz train {self.path.parent} --resume`") from None
            raise
        self._newline_first = False
        faults.point(f"event.{type_}")  # fault injection: die with this event on disk
        return ev

    def try_emit(self, type_: str, **fields_: Any) -> bool:
        """emit for the last words of a failing run (its error and done events): a full
        disk must not turn the failure it is reporting into a second, worse one."""
        try:
            self.emit(type_, **fields_)
            return True
        except OSError:
            return False
        except Exception as e:  # noqa: BLE001 - DiskFullError and friends
            from .errors import TunewizError

            if isinstance(e, TunewizError):
                return False
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):  # a writer dropped without close() must not keep its descriptor
        if getattr(self, "_fd", -1) >= 0:
            self.close()


def _ends_torn(fd: int) -> bool:
    """Whether the file's last byte is not a newline (an empty file is not torn)."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


class NullWriter:
    """Writer for ranks other than 0 and for library calls with no run: drops events."""

    def emit(self, type_: str, **fields_: Any) -> dict:
        return make_event(type_, **fields_)

    def try_emit(self, type_: str, **fields_: Any) -> bool:
        make_event(type_, **fields_)
        return True

    def close(self) -> None:
        pass


class EventReader:
    """Reads new complete lines from an offset; a partial last line waits for its newline."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self._in_long_line = False

    def read_new(self, max_bytes: int = 64 << 20) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(max_bytes)
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            if len(chunk) < max_bytes:
                return []
            # A line longer than a whole read is no event of ours: skip it, never stall on it.
            self.offset += len(chunk)
            self._in_long_line = True
            return []
        self.offset += end + 1
        lines = chunk[: end + 1].splitlines()
        if self._in_long_line:
            lines, self._in_long_line = lines[1:], False
        return [ev for ev in map(parse_line, lines) if ev is not None]


def parse_line(line: bytes | str) -> dict | None:
    try:
        ev = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
        return None
    return ev


def read_events(path: str | Path) -> list[dict]:
    reader = EventReader(path)
    out: list[dict] = []
    while True:  # until the reader stops moving (a read of only bad lines gives no events)
        before = reader.offset
        out.extend(reader.read_new())
        if reader.offset == before:
            return out
