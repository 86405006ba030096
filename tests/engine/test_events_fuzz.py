"""Property-based fuzzing of the events reader (hypothesis, a bounded budget).

Whatever lands in events.jsonl - events from writers that were killed mid-line (torn
fragments, then a new writer), garbage lines, any JSON values and text with lone
surrogates - and however the file grows between reads, the incremental reader returns every
written event once, in order, with its fields intact, plus only those other lines that are
JSON objects with a string type. It never raises and never merges two lines.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewiz.engine.contract.events import EventReader, EventWriter, parse_line, read_events
from tunewiz.engine.contract.run_summary import summarize

BUDGET = settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TEXT = st.text(st.characters(), max_size=10)  # lone surrogates included
KEYS = TEXT.filter(lambda k: k not in ("v", "t", "type"))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 80, 2 ** 80), st.floats(allow_nan=False), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(KEYS, inner, max_size=3)), max_leaves=6)
EVENT = st.tuples(st.just("event"), st.dictionaries(KEYS, VALUES, max_size=3))
GARBAGE = st.tuples(st.just("garbage"), st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")))
# A writer killed mid-line: a fragment without its newline; the next writer is a new one.
TORN = st.tuples(st.just("torn"), st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")))
ITEMS = st.lists(st.one_of(EVENT, GARBAGE, TORN, st.sampled_from([("reopen", None)])), max_size=12)


def _write(path: Path, items) -> list:
    """Write the items as the engine and its accidents would; returns what a reader must see."""
    expected, writer = [], EventWriter(path)
    for kind, value in items:
        if kind == "event":
            ev = writer.emit("log", level="info", msg="m", **value)
            expected.append(json.loads(json.dumps(ev, default=str)))
        elif kind == "reopen":
            writer.close()
            writer = EventWriter(path)
        else:
            writer.close()
            with open(path, "ab") as f:
                f.write(value + (b"\n" if kind == "garbage" else b""))
            if value and parse_line(value) is not None:
                expected.append(parse_line(value))
            writer = EventWriter(path)
    writer.close()
    return expected


@BUDGET
@given(items=ITEMS, cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_the_reader_gets_every_event_whatever_the_file_holds(items, cuts):
    with tempfile.TemporaryDirectory() as tmp:
        written = Path(tmp) / "written.jsonl"
        expected = _write(written, items)
        data = written.read_bytes()
        # The same bytes arrive in pieces while a reader follows them.
        live = Path(tmp) / "live.jsonl"
        live.touch()
        reader, got, last = EventReader(live), [], 0
        for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
            with open(live, "ab") as f:
                f.write(data[last:cut])
            last = max(last, cut)
            got += reader.read_new()
        # A torn last line waits for its newline; the next writer's first event brings it.
        w = EventWriter(live)
        final = w.emit("log", level="info", msg="next session")
        w.close()
        got += reader.read_new()
        assert got == expected + [json.loads(json.dumps(final, default=str))]
        assert read_events(live) == got
        for ev in got:
            assert isinstance(ev, dict) and isinstance(ev["type"], str)
        summarize(got)  # folding any of it never raises


@BUDGET
@given(lines=st.lists(st.binary(max_size=60), max_size=8))
def test_any_bytes_parse_or_are_skipped(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "e.jsonl"
        path.write_bytes(b"\n".join(lines))
        evs = read_events(path)
        assert all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in evs)
        w = EventWriter(path)
        w.emit("log", level="info", msg="after")
        w.close()
        assert read_events(path)[-1]["msg"] == "after"  # never swallowed by what came before
        assert os.path.getsize(path) > 0


def test_a_line_longer_than_a_read_is_skipped_not_stalled_on(tmp_path):
    path = tmp_path / "e.jsonl"
    EventWriter(path).emit("log", level="info", msg="one")
    with open(path, "ab") as f:
        f.write(b"x" * 100 + b"\n" + b"\n".join([b"not json"] * 5) + b"\n")
    EventWriter(path).emit("log", level="info", msg="two")
    reader, got = EventReader(path), []
    for _ in range(50):
        got += reader.read_new(max_bytes=90)
    assert [e["msg"] for e in got] == ["one", "two"]
    assert [e["msg"] for e in read_events(path)] == ["one", "two"]
