"""Reading dataset files into one sample type. Torch-free (the wizard validates with it).

Files are a JSON array, a single JSON object, or JSONL; several may be mixed. The format
is detected per file from its first record (or forced) and every record is validated.
Problems are collected, each naming ``file:line`` and the field, and raised together as
:class:`DataErrors` so that ``check-data`` can list them all while training reports the
first with a count.

Every format becomes a :class:`Sample`: pretraining text, or a list of chat messages
``{"role": "system"|"user"|"assistant", "content": str}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError

FORMATS = ("pretrain", "conversation", "openai", "alpaca", "sharegpt")
MAX_ERRORS = 20
ROLES = ("system", "user", "assistant")
# ShareGPT speaker names; "user"/"assistant" appear in many exports, so they are accepted too.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
# XTuner drops Alpaca records whose answer is this placeholder.
ALPACA_NO_OUTPUT = "<nooutput>"


@dataclass
class Sample:
    source: str                                  # "file:line", for messages that point at it
    text: str | None = None                      # pretraining text, or None for chat
    messages: list[dict] = field(default_factory=list)

    @property
    def is_chat(self) -> bool:
        return self.text is None


class DataErrors(DataError):
    """Several data problems at once; ``problems`` holds every ``file:line: problem`` line."""

    def __init__(self, problems: list[str], total: int | None = None, hint: str = ""):
        total = total if total is not None else len(problems)
        more = f" (and {total - 1} more problem{'s' if total > 2 else ''})" if total > 1 else ""
        super().__init__(problems[0] + more, hint or "fix the records named above, or run `tunewiz check-data`")
        self.problems = problems
        self.total = total


@dataclass
class LoadedData:
    samples: list[Sample]
    formats: dict[str, str]        # file -> format used
    records: int                   # records read, before filtering
    filtered: int                  # records dropped on purpose (e.g. Alpaca "<nooutput>")


class _Problems:
    """Collects up to MAX_ERRORS messages and counts the rest."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.total = 0

    def add(self, where: str, problem: str) -> None:
        self.total += 1
        if len(self.lines) < MAX_ERRORS:
            self.lines.append(f"{where}: {problem}")

    def raise_if_any(self) -> None:
        if self.total:
            raise DataErrors(self.lines, self.total)


# --------------------------------------------------------------------------- reading

def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError("no such file", "check the path", where=str(path))
    if not path.is_file():
        raise DataError("not a file", "pass JSON or JSONL files, not folders", where=str(path))
    try:
        return path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})",
                        "save the file as UTF-8 JSON or JSONL", where=str(path)) from None
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror})", "check the file's permissions", where=str(path)) from None


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _iter_json_array(text: str, name: str, start: int) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) of a top-level JSON array, so errors can name the element's line."""
    decoder = json.JSONDecoder()
    n, pos = len(text), start + 1
    line, line_pos = _line_of(text, start), start

    def skip_ws(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    pos = skip_ws(pos)
    if pos < n and text[pos] == "]":
        return
    while True:
        if pos >= n:
            raise DataError("not valid JSON (the array is not closed with ])", "fix the JSON syntax",
                            where=f"{name}:{_line_of(text, n)}")
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", "fix the JSON syntax", where=f"{name}:{e.lineno}") from None
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        yield line, obj
        pos = skip_ws(end)
        if pos < n and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            if skip_ws(pos + 1) < n:
                raise DataError("not valid JSON (text after the closing ])", "fix the JSON syntax",
                                where=f"{name}:{_line_of(text, skip_ws(pos + 1))}")
            return
        raise DataError("not valid JSON (expected , or ] between records)", "fix the JSON syntax",
                        where=f"{name}:{_line_of(text, min(pos, n))}")


def iter_records(path: str | Path, problems: _Problems | None = None) -> Iterator[tuple[str, Any]]:
    """Yield ("file:line", record) for every record of one file.

    A JSON array or a single object is parsed as a whole (a syntax error stops the file);
    JSONL is parsed line by line, and a bad line is reported (to ``problems`` when given)
    while the other lines are still read.
    """
    path = Path(path)
    name = str(path)
    text = _read_text(path)
    start = len(text) - len(text.lstrip())
    if start == len(text):
        raise DataError("the file is empty", "add records: a JSON array or one JSON object per line", where=name)
    if text[start] == "[":
        for line, obj in _iter_json_array(text, name, start):
            yield f"{name}:{line}", obj
        return
    lines = text.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.strip())
    try:
        json.loads(lines[first])
    except json.JSONDecodeError:
        # Not JSONL from its first line on: maybe one pretty-printed JSON object.
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", "use a JSON array or one JSON object per line (JSONL)",
                            where=f"{name}:{e.lineno}") from None
        yield f"{name}:{_line_of(text, start)}", obj
        return
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as e:
            where = f"{name}:{i + 1}"
            if problems is None:
                raise DataError(f"not valid JSON ({e.msg})", "each line must be one JSON object", where=where) from None
            problems.add(where, f"not valid JSON ({e.msg})")
            continue
        yield f"{name}:{i + 1}", obj


# --------------------------------------------------------------------------- formats

def detect_format(record: Any) -> str | None:
    """The format a record's keys announce, or None."""
    if not isinstance(record, dict):
        return None
    if "conversation" in record:
        return "conversation"
    if "messages" in record:
        return "openai"
    if "conversations" in record:
        return "sharegpt"
    if "text" in record:
        return "pretrain"
    if "instruction" in record and "output" in record:
        return "alpaca"
    return None


class _Bad(Exception):
    """One problem in one record (the field and what is wrong)."""


class _Skip(Exception):
    """A record dropped on purpose."""


def _text(value: Any, field_: str, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        got = "missing" if value is None else f"got {_kind(value)}"
        raise _Bad(f"{field_} must be text ({got})")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number"}.get(
        type(value), type(value).__name__)


def _list(record: dict, key: str) -> list:
    value = record.get(key)
    if value is None:
        raise _Bad(f"missing {key}")
    if not isinstance(value, list):
        raise _Bad(f"{key} must be a list (got {_kind(value)})")
    if not value:
        raise _Bad(f"{key} is empty")
    return value


def _item(value: Any, field_: str) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{field_} must be an object (got {_kind(value)})")
    return value


def _needs_answer(messages: list[dict], field_: str) -> list[dict]:
    # Like XTuner, answers before the first question are dropped (nothing to answer).
    i = 0
    while i < len(messages) and messages[i]["role"] == "assistant":
        i += 1
    messages = messages[i:]
    if not any(m["role"] == "assistant" for m in messages):
        raise _Bad(f"{field_} has no assistant answer to train on")
    return messages


def _from_pretrain(r: dict) -> Sample:
    text = _text(r.get("text"), "text").strip()  # XTuner strips pretraining text too
    if not text:
        raise _Bad("text is empty")
    return Sample("", text=text)


def _from_conversation(r: dict) -> Sample:
    messages = []
    for i, turn in enumerate(_list(r, "conversation")):
        f = f"conversation[{i}]"
        turn = _item(turn, f)
        system = _text(turn.get("system"), f"{f}.system", optional=True)
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": _text(turn.get("input"), f"{f}.input", optional=True)})
        messages.append({"role": "assistant", "content": _text(turn.get("output"), f"{f}.output")})
    return Sample("", messages=messages)


def _from_openai(r: dict) -> Sample:
    messages = []
    for i, m in enumerate(_list(r, "messages")):
        f = f"messages[{i}]"
        m = _item(m, f)
        role = m.get("role")
        if role not in ROLES:
            raise _Bad(f"{f}.role must be one of {', '.join(ROLES)} (got {role!r})")
        messages.append({"role": role, "content": _text(m.get("content"), f"{f}.content")})
    return Sample("", messages=_needs_answer(messages, "messages"))


def _from_sharegpt(r: dict) -> Sample:
    messages = []
    for i, m in enumerate(_list(r, "conversations")):
        f = f"conversations[{i}]"
        m = _item(m, f)
        who = m.get("from")
        if who not in SHAREGPT_ROLES:
            raise _Bad(f"{f}.from must be human, gpt or system (got {who!r})")
        messages.append({"role": SHAREGPT_ROLES[who], "content": _text(m.get("value"), f"{f}.value")})
    return Sample("", messages=_needs_answer(messages, "conversations"))


def _from_alpaca(r: dict) -> Sample:
    instruction = _text(r.get("instruction"), "instruction")
    extra = _text(r.get("input"), "input", optional=True)
    output = _text(r.get("output"), "output")
    if output == ALPACA_NO_OUTPUT:
        raise _Skip()
    prompt = f"{instruction}\n{extra}" if extra else instruction
    return Sample("", messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": output}])


_PARSERS = {"pretrain": _from_pretrain, "conversation": _from_conversation, "openai": _from_openai,
            "sharegpt": _from_sharegpt, "alpaca": _from_alpaca}
_KEYS_HINT = ('{"text"} (pretrain), {"conversation"} (XTuner), {"messages"} (openai), '
              '{"instruction", "output"} (alpaca), {"conversations"} (sharegpt)')


def to_sample(record: Any, fmt: str, where: str) -> Sample:
    """Validate one record of a known format; raises DataError naming ``where`` and the field."""
    if not isinstance(record, dict):
        raise DataError(f"a record must be a JSON object (got {_kind(record)})", where=where)
    try:
        sample = _PARSERS[fmt](record)
    except _Bad as e:
        raise DataError(str(e), where=where) from None
    sample.source = where
    return sample


def load_samples(files: list[str] | tuple[str, ...], fmt: str = "auto") -> LoadedData:
    """Read, validate and normalize every record of every file.

    Raises DataErrors with every problem found (up to MAX_ERRORS listed, all counted).
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}", f"use auto or one of: {', '.join(FORMATS)}")
    if not files:
        raise DataError("no data files given", "list JSON or JSONL files under data.files")
    problems = _Problems()
    samples: list[Sample] = []
    formats: dict[str, str] = {}
    records = filtered = 0
    for name in files:
        file_fmt = None if fmt == "auto" else fmt
        try:
            for where, record in iter_records(name, problems):
                records += 1
                if file_fmt is None:
                    file_fmt = detect_format(record)
                    if file_fmt is None:
                        keys = ", ".join(map(str, record)) if isinstance(record, dict) else _kind(record)
                        problems.add(where, f"cannot tell the format from this record ({keys or 'no keys'}); "
                                            f"expected {_KEYS_HINT}")
                        break
                    formats[str(name)] = file_fmt
                try:
                    samples.append(to_sample(record, file_fmt, where))
                except DataError as e:
                    problems.add(where, e.msg.removeprefix(f"{where}: "))
                except _Skip:
                    filtered += 1
        except DataError as e:
            problems.add(e.where or str(name), e.msg.removeprefix(f"{e.where}: "))
        if fmt != "auto":
            formats[str(name)] = fmt
    problems.raise_if_any()
    if not samples:
        raise DataError(f"no usable records ({records} read, {filtered} dropped)",
                        "add records with answers to train on", where=str(files[0]))
    return LoadedData(samples, formats, records, filtered)
