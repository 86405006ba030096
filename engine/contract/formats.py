"""Reading datasets into one sample type. Torch-free (the wizard validates with it).

Sources are JSON (an array or one object), JSONL, Parquet, Arrow, CSV/TSV, save_to_disk
folders, folders of data files and hub dataset ids (see sources.py); several may be mixed.
:class:`SampleStream` reads them one record at a time, memory flat in their size. The
format is detected per source from its first record (or forced) and every record is
validated. Problems are collected, each naming ``file:line`` (``file:row N`` for columnar
files) and the field, and raised together as :class:`DataErrors` so that ``check-data``
can list them all while training reports the first with a count.

Every format becomes a :class:`Sample`: pretraining text, or a list of chat messages
``{"role": "system"|"user"|"assistant", "content": str}``. Tool use in ShareGPT data
trains like any answer: a ``function_call`` turn is the assistant's (its call is learned),
an ``observation`` is input the user side gives back, and the record's ``tools`` are
written into its system message after the record's own ``system``. OpenAI content lists
of text parts are joined with newlines.

Data that cannot be trained on as text (multimodal, preference pairs) refuses its file in
one line (unsupported_data.py). With ``skip_invalid`` a bad record is left out and counted
instead of failing the data; :meth:`SampleStream.warnings` says how many, and names
unfilled ``{{placeholders}}`` (data_warnings.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, get_args

from . import unsupported_data
from .config import DataFormat
from .data_warnings import SKIPPED_SHOWN, Placeholders, skipped_warning
from .errors import DataError
from .json_records import iter_json_records
from .sources import Source, resolve
from .unsupported_data import UnsupportedData

# The formats a reader exists for: the config's choices less "auto", which tells them apart
# (one list: a format added to the config's DataFormat needs a parser in _PARSERS below).
FORMATS = tuple(f for f in get_args(DataFormat) if f != "auto")
MAX_ERRORS = 20
ROLES = ("system", "user", "assistant")
# ShareGPT speaker names; "user"/"assistant" appear in many exports, so they are accepted too.
# A tool call is the assistant's turn (trained); the tool's answer is input, as a user turn is.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "user"}
TOOLS_HEADING = "Tools:"
# XTuner drops Alpaca records whose answer is this placeholder.
ALPACA_NO_OUTPUT = "<nooutput>"
FILES_HINT = ("JSON, JSONL, Parquet, Arrow, CSV or TSV files, save_to_disk folders, folders of such files, "
              "or hub dataset ids")


@dataclass
class Sample:
    source: str                                  # "file:line" or "file:row N", for messages that point at it
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
        default = ("fix that record" if total == 1 else
                   "fix the records; `tunewiz check-data` lists every problem")
        super().__init__(problems[0] + more, hint or default)
        self.own_hint = hint  # the problems' shared fix ("" when they need different ones)
        self.problems = problems
        self.total = total


@dataclass
class LoadedData:
    samples: list[Sample]
    formats: dict[str, str]        # file -> format used
    records: int                   # records read, before filtering
    filtered: int                  # records dropped on purpose (e.g. Alpaca "<nooutput>")


class _Problems:
    """Collects up to MAX_ERRORS messages and counts the rest.

    ``add`` is for problems of a whole source (a missing file, a refused kind of data),
    ``record`` for one bad record: with ``skip`` on, those are only counted as skipped
    (the first SKIPPED_SHOWN kept to name them) and the data stays usable.
    """

    def __init__(self, skip: bool = False) -> None:
        self.lines: list[str] = []
        self.total = 0
        self.first_hint = ""
        self.hints: set[str] = set()
        self.skip = skip
        self.bad_records = 0      # of total: problems that skip_invalid would have skipped
        self.skipped = 0
        self.skipped_lines: list[str] = []

    def record(self, where: str, problem: str) -> None:
        if not self.skip:
            self.bad_records += 1
            self.add(where, problem)
            return
        self.skipped += 1
        if len(self.skipped_lines) < SKIPPED_SHOWN:
            self.skipped_lines.append(f"{where}: {problem}")

    def add(self, where: str, problem: str, hint: str = "") -> None:
        self.total += 1
        if self.total == 1:
            self.first_hint = hint
        self.hints.add(hint)
        if len(self.lines) < MAX_ERRORS:
            self.lines.append(f"{where}: {problem}")

    def raise_if_any(self) -> None:
        # A lone problem keeps its own fix (e.g. how to get a hub dataset offline), and so do
        # problems that share one (files that cannot be read are no records to fix).
        if self.total:
            raise DataErrors(self.lines, self.total, hint=self.first_hint if len(self.hints) == 1 else "")


# --------------------------------------------------------------------------- reading

def iter_records(path: str | Path, problems: _Problems | None = None) -> Iterator[tuple[str, Any]]:
    """Yield ("file:line", record) for every record of one JSON or JSONL file (see json_records)."""
    return iter_json_records(path, problems)


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
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:   # JSON's \ud800 escapes decode to lone surrogates
            raise _Bad(f"{field_} is not valid Unicode text (a lone surrogate {value[e.start]!r} "
                       f"at character {e.start})") from None
    return value


def _shown(value: Any, limit: int = 40) -> str:
    """A value as it appears in a message: its repr, cut to ``limit`` characters (a record
    can hold megabytes, and the message must stay one readable line)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


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
            raise _Bad(f"{f}.role must be one of {', '.join(ROLES)} (got {_shown(role)})")
        messages.append({"role": role, "content": _content(m.get("content"), f"{f}.content")})
    return Sample("", messages=_needs_answer(messages, "messages"))


def _content(value: Any, field_: str) -> str:
    """An OpenAI message's content: text, or a list of parts whose text parts are joined."""
    if not isinstance(value, list):
        return _text(value, field_)
    texts = []
    for j, part in enumerate(value):
        f = f"{field_}[{j}]"
        kind = _item(part, f).get("type")
        if kind == "text":
            texts.append(_text(part.get("text"), f"{f}.text"))
        elif unsupported_data.is_media_part(kind):
            raise UnsupportedData("multimodal", f"{kind} content parts")
        else:
            raise _Bad(f"{f}.type must be text (got {_shown(kind)})")
    return "\n".join(texts)


def _from_sharegpt(r: dict) -> Sample:
    messages = []
    for i, m in enumerate(_list(r, "conversations")):
        f = f"conversations[{i}]"
        m = _item(m, f)
        who = m.get("from")
        if not isinstance(who, str) or who not in SHAREGPT_ROLES:
            raise _Bad(f"{f}.from must be human, gpt, system, function_call or observation (got {_shown(who)})")
        messages.append({"role": SHAREGPT_ROLES[who], "content": _text(m.get("value"), f"{f}.value")})
    return Sample("", messages=_needs_answer(_with_record_system(r, messages), "conversations"))


def _with_record_system(r: dict, messages: list[dict]) -> list[dict]:
    """The record's ``system`` and ``tools`` (LLaMA-Factory's ShareGPT keys) as its system
    message: the model only learns to call tools it is shown."""
    system = _text(r.get("system"), "system", optional=True)
    tools = r.get("tools")
    if tools and not isinstance(tools, str):
        tools = json.dumps(tools, ensure_ascii=False)
    tools = _text(tools, "tools", optional=True)
    extra = "\n\n".join(part for part in (system, f"{TOOLS_HEADING}\n{tools}" if tools else "") if part)
    if not extra:
        return messages
    if messages and messages[0]["role"] == "system":
        first = messages[0]["content"]
        return [{"role": "system", "content": f"{first}\n\n{extra}" if first else extra}, *messages[1:]]
    return [{"role": "system", "content": extra}, *messages]


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
    """Validate one record of a known format; raises DataError naming ``where`` and the field,
    or UnsupportedData for a kind of data that refuses its whole file."""
    if not isinstance(record, dict):
        raise DataError(f"a record must be a JSON object (got {_kind(record)})", where=where)
    unsupported_data.check_record(record)
    try:
        sample = _PARSERS[fmt](record)
    except _Bad as e:
        raise DataError(str(e), where=where) from None
    if sample.is_chat:
        unsupported_data.check_messages(sample.messages)
    sample.source = where
    return sample


class SampleStream:
    """Validated samples of data.files, one at a time; memory stays flat in the data's size.

    ``formats`` (source -> format), ``records`` (read, before filtering), ``filtered``
    (dropped on purpose), ``samples`` (yielded) and ``problems`` fill in as it is iterated;
    iterating again starts over. After a full pass, :meth:`raise_if_problems` raises what
    :func:`load_samples` would. Sources are files, folders or hub ids (see sources.py).
    ``head`` reads at most that many records of each source (a quick check); ``cut`` then
    says whether some source had more. ``skip_invalid`` leaves bad records out (counted in
    ``problems.skipped``) instead of failing the data.
    """

    def __init__(self, files: list[str] | tuple[str, ...], fmt: str = "auto", head: int | None = None,
                 skip_invalid: bool = False):
        if fmt != "auto" and fmt not in FORMATS:
            raise DataError(f"unknown format {fmt!r}", f"use auto or one of: {', '.join(FORMATS)}")
        if not files:
            raise DataError("no data files given", f"list them under data.files: {FILES_HINT}")
        self.files, self.fmt, self.head = [str(f) for f in files], fmt, head
        self.skip_invalid = skip_invalid
        self._resolved: dict[str, list[Source]] = {}
        self._reset()

    def _reset(self) -> None:
        self.formats: dict[str, str] = {}
        self.records = self.filtered = self.samples = 0
        self.cut = False
        self.problems = _Problems(skip=self.skip_invalid)
        self.placeholders = Placeholders()

    def _sources(self, entry: str) -> list[Source]:
        # Resolved once: a hub dataset is loaded once for the hint, the key and the records.
        if entry not in self._resolved:
            self._resolved[entry] = resolve(entry)
        return self._resolved[entry]

    def __iter__(self) -> Iterator[Sample]:
        self._reset()
        for entry in self.files:
            try:
                sources = self._sources(entry)
            except DataError as e:
                self.problems.add(e.where or entry, e.msg.removeprefix(f"{e.where}: "), e.hint)
                if self.fmt != "auto":
                    self.formats[entry] = self.fmt
                continue
            for source in sources:
                yield from self._source_samples(source)

    def _source_samples(self, source: Source) -> Iterator[Sample]:
        fmt = None if self.fmt == "auto" else self.fmt
        read = 0
        try:
            for part in source.parts:
                for where, record in part.records(self.problems):
                    if read == self.head:
                        self.cut = True
                        return
                    read += 1
                    self.records += 1
                    try:
                        if fmt is None:
                            if isinstance(record, dict):
                                unsupported_data.check_record(record)
                            fmt = detect_format(record)
                            if fmt is None:
                                keys = ", ".join(map(str, record)) if isinstance(record, dict) else _kind(record)
                                self.problems.add(where, f"cannot tell the format from this record "
                                                         f"({keys or 'no keys'}); expected {_KEYS_HINT}")
                                return
                            self.formats[source.name] = fmt
                        sample = to_sample(record, fmt, where)
                    except UnsupportedData as e:
                        self.problems.add(where, e.message(source.name), e.hint)
                        return
                    except DataError as e:
                        self.problems.record(where, e.msg.removeprefix(f"{where}: "))
                        continue
                    except _Skip:
                        self.filtered += 1
                        continue
                    if sample.is_chat:
                        self.placeholders.see(source.name, sample.messages)
                    self.samples += 1
                    yield sample
        except DataError as e:
            self.problems.add(e.where or source.name, e.msg.removeprefix(f"{e.where}: "), e.hint)
        finally:
            if self.fmt != "auto":
                self.formats[source.name] = self.fmt

    def raise_if_problems(self) -> None:
        """After a full pass: DataErrors for the problems found, or no usable records."""
        self.problems.raise_if_any()
        if not self.samples:
            raise DataError(f"no usable records ({self.records} read, {self.filtered} dropped)",
                            "add records with answers to train on", where=self.files[0])

    def warnings(self) -> list[str]:
        """After a pass: one line per thing worth a warning (unfilled placeholders per
        source, the records skipped as bad)."""
        out = self.placeholders.warnings()
        if self.problems.skipped:
            out.append(skipped_warning(self.problems.skipped, self.problems.skipped_lines))
        return out

    def rows_hint(self) -> int | None:
        """A cheap estimate of the records to come (for progress bars); None when unknown."""
        try:
            return sum(part.rows_hint() for entry in self.files for source in self._sources(entry)
                       for part in source.parts)
        except (DataError, OSError):  # a missing or vanished source: reading will say what is wrong
            return None

    def fingerprint(self) -> str:
        """A hex digest of the sources' contents and the format, for a cache key.

        Per file its resolved path, size, mtime_ns and a hash of its content (see
        sources.file_identity); a folder stands for its data files, a hub dataset for its id,
        split and what ``datasets`` knows of its revision. DataError when a source is missing.
        """
        # Not the entries' spelling: ./data/x.jsonl and data/x.jsonl are the same data.
        ident = {"format": self.fmt,
                 "sources": [[part.identity() for source in self._sources(entry) for part in source.parts]
                             for entry in self.files]}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def load_samples(files: list[str] | tuple[str, ...], fmt: str = "auto", skip_invalid: bool = False) -> LoadedData:
    """Read, validate and normalize every record of every source.

    Raises DataErrors with every problem found (up to MAX_ERRORS listed, all counted).
    """
    stream = SampleStream(files, fmt, skip_invalid=skip_invalid)
    samples = list(stream)
    stream.raise_if_problems()
    return LoadedData(samples, stream.formats, stream.records, stream.filtered)
