"""Streaming JSON and JSONL reading: one record at a time, memory flat in the file size.

A file is a JSON array, a single JSON object, or JSONL (told apart from the first
non-blank character and line). JSONL is read line by line. A JSON array is decoded from
a bounded window of the file's text: ``raw_decode`` at the next element, and the window
grows only when an element runs past its end. Every record comes with the line its first
character is on, so problems can name ``file:line``.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .errors import DataError

# Bytes read at a time, and so the window kept beyond the record being decoded. A module
# constant so that tests can shrink it and make records span window ends.
BUFFER_SIZE = 1 << 20
_BOM = codecs.BOM_UTF8
_JSON_WS = " \t\r\n"
# An error this close to the window's end may just be the record running past it.
_NEAR_END = 64
HINT_BYTES = 1 << 20              # read at a time when counting lines for a rows hint
_HINT_UTF8 = "save the file as UTF-8 JSON or JSONL"


class Decoder(json.JSONDecoder):
    """json's decoder, but every way valid-looking text can fail is a JSONDecodeError: a
    value nested past the interpreter's recursion limit and an integer past its digit
    limit raise RecursionError / ValueError from the stdlib, which would escape as bugs."""

    def raw_decode(self, s: str, idx: int = 0):
        try:
            return super().raw_decode(s, idx)
        except json.JSONDecodeError:
            raise
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", s, idx) from None
        except ValueError as e:   # "Exceeds the limit (4300 digits) for integer string conversion"
            raise json.JSONDecodeError(str(e).split(":")[0].strip() or "bad number", s, idx) from None


_DECODER = Decoder()


def loads(text: str) -> Any:
    """json.loads with :class:`Decoder` (leading and trailing whitespace allowed, as json's)."""
    value, end = _DECODER.raw_decode(text, _skip_ws(text, 0))
    if _skip_ws(text, end) != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value
_HINT_SHAPE = "use a JSON array or one JSON object per line (JSONL)"


def iter_json_records(path: str | Path, problems=None) -> Iterator[tuple[str, Any]]:
    """Yield ("file:line", record) for every record of one JSON or JSONL file.

    A syntax error in a JSON array or single object stops the file (raised as DataError);
    a bad JSONL line is reported to ``problems`` (when given) and the other lines are read.
    """
    path = Path(path)
    name = str(path)
    with _open(path) as f:
        first = _first_char(f, name)
        f.seek(0)
        if first == "[":
            yield from _array_records(f, name)
        else:
            yield from _jsonl_or_object(f, name, problems)


def json_rows_hint(path: str | Path) -> int:
    """A cheap estimate of the records in a JSON or JSONL file: JSONL counts its lines; an
    array divides the file's size by the mean size of its first records."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HINT_BYTES)
        if head.lstrip(_BOM + b" \t\r\n")[:1] != b"[":
            lines, last = head.count(b"\n"), head
            for chunk in iter(lambda: f.read(HINT_BYTES), b""):
                lines, last = lines + chunk.count(b"\n"), chunk
            return max(lines + (not last.endswith(b"\n")), 1)
    text = head.decode("utf-8", "replace")
    decoder, pos, seen = Decoder(), text.index("[") + 1, 0
    while True:
        pos = _skip_ws(text, pos)
        try:
            _, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        seen, pos = seen + 1, _skip_ws(text, end) + 1
    if not seen:
        return 1
    return seen if size <= len(head) else max(seen, round(size * seen / max(pos, 1)))


# --------------------------------------------------------------------------- files

def _open(path: Path) -> BinaryIO:
    if not path.exists():
        raise DataError("no such file", "check the path", where=str(path))
    if not path.is_file():
        raise DataError("not a file", "pass data files or folders", where=str(path))
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror})", "check the file's permissions", where=str(path)) from None


def _read(f: BinaryIO, name: str, size: int) -> bytes:
    try:
        return f.read(size)
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror})", "check the file's permissions", where=name) from None


def _not_utf8(e: UnicodeDecodeError, offset: int, name: str) -> DataError:
    return DataError(f"not UTF-8 text ({e.reason} at byte {offset + e.start})", _HINT_UTF8, where=name)


def _first_char(f: BinaryIO, name: str) -> str:
    """The first non-blank character, or an error when there is none."""
    window = _Window(f, name, line=1)
    while True:
        rest = window.text.lstrip()
        if rest:
            return rest[0]
        window.drop(len(window.text))
        if not window.more():
            raise DataError("the file is empty", "add records: a JSON array or one JSON object per line", where=name)


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _JSON_WS:
        i += 1
    return i


class _Window:
    """Decoded text of a file from some point on, read BUFFER_SIZE bytes at a time.

    ``line`` is the line of ``text[0]``; positions handed to ``line_at`` only move forward,
    so every newline is counted once however often lines are asked for.
    """

    def __init__(self, f: BinaryIO, name: str, line: int, offset: int = 0):
        self.f, self.name = f, name
        # A byte-order mark is tolerated at the file's start only.
        self.decoder = codecs.getincrementaldecoder("utf-8-sig" if offset == 0 else "utf-8")()
        self.text = ""
        self.eof = False
        self.offset = offset          # bytes read so far, for the byte named by an encoding error
        self.line, self._pos = line, 0  # the line at text position _pos

    def more(self, size: int = 0) -> bool:
        """Append the next bytes (at least BUFFER_SIZE); False once the file is used up."""
        if self.eof:
            return False
        data = _read(self.f, self.name, max(size, BUFFER_SIZE))
        pending = len(self.decoder.getstate()[0])
        try:
            self.text += self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as e:
            raise _not_utf8(e, self.offset - pending, self.name) from None
        self.offset += len(data)
        self.eof = not data
        return bool(data)

    def line_at(self, pos: int) -> int:
        self.line += self.text.count("\n", self._pos, pos)
        self._pos = pos
        return self.line

    def drop(self, pos: int) -> None:
        """Forget the text before ``pos`` (the window stays bounded)."""
        self.line_at(pos)
        self.text = self.text[pos:]
        self._pos = 0

    def end_line(self) -> int:
        return self.line_at(len(self.text))


def _decode(window: _Window, decoder: json.JSONDecoder, pos: int,
            hint: str = "fix the JSON syntax") -> tuple[Any, int, int]:
    """(value, end, pos) of the JSON value at ``pos``, reading on while it runs past the
    window's end. ``pos`` comes back shifted when the window dropped text before it."""
    while True:
        try:
            value, end = decoder.raw_decode(window.text, pos)
        except json.JSONDecodeError as e:
            # A cut record fails at the window's end, or inside a string that reaches it; a
            # real error fails again at the same place once more text is there.
            cut = e.msg.startswith("Unterminated string") or e.pos >= len(window.text) - _NEAR_END
            if cut and not window.eof:
                pos = _grow(window, pos)
                continue
            # Name the record by the line it starts on (what a user looks for), and say
            # where inside it the parser stopped when that is another line.
            start = window.line_at(pos)
            stop = window.line_at(max(e.pos, pos))
            inside = f" at line {stop}" if stop != start else ""
            raise DataError(f"not valid JSON ({e.msg}{inside})", hint,
                            where=f"{window.name}:{start}") from None
        # A number or literal that ends where the window ends may go on past it.
        if end >= len(window.text) and not window.eof:
            pos = _grow(window, pos)
            continue
        return value, end, pos


def _grow(window: _Window, pos: int) -> int:
    window.drop(pos)
    # Doubling keeps a record much larger than the window from being re-scanned many times.
    window.more(len(window.text))
    return 0


def _ws_then(window: _Window, pos: int) -> tuple[int, str]:
    """Skip whitespace, reading on; (position, the next character or "" at the end)."""
    while True:
        pos = _skip_ws(window.text, pos)
        if pos < len(window.text):
            return pos, window.text[pos]
        window.drop(pos)
        pos = 0
        if not window.more():
            return 0, ""


def _array_records(f: BinaryIO, name: str) -> Iterator[tuple[str, Any]]:
    """(file:line, element) of a top-level JSON array, each line that of the element's start."""
    window = _Window(f, name, line=1)
    decoder = Decoder()
    while not window.text.lstrip():  # the blank space before "[", as _first_char found it
        window.drop(len(window.text))
        window.more()
    pos, ch = _ws_then(window, window.text.index("[") + 1)
    if ch == "]":
        _only_space_after(window, pos + 1)
        return
    while True:
        if ch == "":
            raise DataError("not valid JSON (the array is not closed with ])", "fix the JSON syntax",
                            where=f"{name}:{window.end_line()}")
        value, end, pos = _decode(window, decoder, pos)
        yield f"{name}:{window.line_at(pos)}", value
        pos, ch = _ws_then(window, end)
        if ch == ",":
            pos, ch = _ws_then(window, pos + 1)
            continue
        if ch == "]":
            _only_space_after(window, pos + 1)
            return
        raise DataError("not valid JSON (expected , or ] between records)", "fix the JSON syntax",
                        where=f"{name}:{window.end_line() if ch == '' else window.line_at(pos)}")


def _only_space_after(window: _Window, pos: int) -> None:
    pos, ch = _ws_then(window, pos)
    if ch:
        raise DataError("not valid JSON (text after the closing ])", "fix the JSON syntax",
                        where=f"{window.name}:{window.line_at(pos)}")


def _jsonl_or_object(f: BinaryIO, name: str, problems) -> Iterator[tuple[str, Any]]:
    """JSONL when the first non-blank line is a JSON value, else one (pretty-printed) object."""
    offset, first = 0, True
    for number, raw in enumerate(iter(lambda: _readline(f, name), b""), 1):
        if number == 1 and raw.startswith(_BOM):
            raw, offset = raw[len(_BOM):], len(_BOM)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _not_utf8(e, offset, name) from None
        start, offset = offset, offset + len(raw)
        line = line.removesuffix("\n").removesuffix("\r")  # as json.loads of the line alone
        if not line.strip():
            continue
        try:
            record = loads(line)
        except json.JSONDecodeError as e:
            if first:
                yield _one_object(f, name, start, number)
                return
            where = f"{name}:{number}"
            if problems is None:
                raise DataError(f"not valid JSON ({e.msg})", "each line must be one JSON object", where=where) from None
            problems.record(where, f"not valid JSON ({e.msg})")
            continue
        first = False
        yield f"{name}:{number}", record


def _readline(f: BinaryIO, name: str) -> bytes:
    try:
        return f.readline()
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror})", "check the file's permissions", where=name) from None


def _one_object(f: BinaryIO, name: str, offset: int, line: int) -> tuple[str, Any]:
    """The file as one JSON value from ``offset`` (the start of its first non-blank line)."""
    f.seek(offset, os.SEEK_SET)
    window = _Window(f, name, line=line, offset=offset)
    window.more()
    pos, _ = _ws_then(window, 0)
    start_line = window.line_at(pos)
    value, end, pos = _decode(window, Decoder(), pos, hint=_HINT_SHAPE)
    end, ch = _ws_then(window, end)
    if ch:
        raise DataError("not valid JSON (Extra data)", _HINT_SHAPE, where=f"{name}:{window.line_at(end)}")
    return f"{name}:{start_line}", value
