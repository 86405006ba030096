"""Data that parses badly in unusual ways is a `file:line` data error, never a crash:
deep nesting, integers past Python's digit limit, lone surrogates, wrong types anywhere;
and a property test: whatever bytes a data file holds, reading it either gives samples or
raises DataError."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewiz.engine.contract.errors import DataError
from tunewiz.engine.contract.formats import load_samples

DEEP = "[" * 100_000 + "]" * 100_000
CASES = {
    "deep nesting in JSONL": ("d.jsonl", '{"conversation": [{"input": "q", "output": "a"}]}\n{"text": ' + DEEP + "}\n",
                              "d.jsonl:2", "nested too deeply"),
    "deep nesting in an array": ("d.json", "[" + DEEP + "]\n", "d.json:1", "nested too deeply"),
    "huge integer": ("d.jsonl", '{"text": ' + "9" * 5000 + "}\n", "d.jsonl:1", "digits"),
    "lone surrogate": ("d.jsonl", '{"conversation": [{"input": "hi \\ud800", "output": "a"}]}\n', "d.jsonl:1",
                       "lone surrogate"),
    "sharegpt from is a list": ("d.jsonl", json.dumps({"conversations": [{"from": ["human"], "value": "q"},
                                                                         {"from": "gpt", "value": "a"}]}) + "\n",
                                "d.jsonl:1", "conversations[0].from"),
    "openai role is an object": ("d.jsonl", json.dumps({"messages": [{"role": {"x": 1}, "content": "q"}]}) + "\n",
                                 "d.jsonl:1", "messages[0].role"),
    "a huge bad value is not echoed whole": ("d.jsonl", json.dumps({"messages": [{"role": "x" * 100_000,
                                                                                 "content": "q"}]}) + "\n",
                                             "d.jsonl:1", "…"),
}


@pytest.mark.parametrize("name", CASES)
def test_edge_case_is_a_data_error(tmp_path, name):
    file, text, where, what = CASES[name]
    (tmp_path / file).write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_samples([str(tmp_path / file)])
    assert f"{tmp_path / where}:" in e.value.msg and what in e.value.msg
    assert len(e.value.one_line()) < 400 and "\n" not in e.value.one_line()


RECORD_KEYS = st.sampled_from(["text", "conversation", "messages", "conversations", "instruction", "output",
                               "input", "role", "content", "from", "value", "system"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(RECORD_KEYS, inner, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(JSON_VALUES, min_size=1, max_size=5), as_array=st.booleans())
def test_any_json_gives_samples_or_a_data_error(tmp_path, records, as_array):
    path = tmp_path / ("f.json" if as_array else "f.jsonl")
    path.write_text(json.dumps(records) if as_array else "\n".join(json.dumps(r) for r in records) + "\n")
    try:
        loaded = load_samples([str(path)])
    except DataError as e:
        assert str(path) in e.msg and "\n" not in e.one_line()
    else:
        assert loaded.samples and all(s.source.startswith(f"{path}:") for s in loaded.samples)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet", ".arrow"]))
def test_any_bytes_give_samples_or_a_data_error(tmp_path, data, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    try:
        load_samples([str(path)])
    except DataError as e:
        assert "\n" not in e.one_line()


def test_broken_json_in_an_array_names_the_records_first_line(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('[\n {"text": "a"},\n {"text": "b",\n  "x": }\n]\n')
    with pytest.raises(DataError) as e:
        load_samples([str(f)])
    assert e.value.msg.startswith(f"{f}:3: not valid JSON") and "at line 4" in e.value.msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root enters every folder: the permission check needs another user")
def test_a_folder_that_cannot_be_entered_is_a_data_error(tmp_path):
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "a.jsonl").write_text('{"text": "a"}\n')
    locked.chmod(0)
    try:
        with pytest.raises(DataError) as e:
            load_samples([str(locked / "inner" / "a.jsonl")])
        assert "cannot reach it" in e.value.msg
    finally:
        locked.chmod(0o755)
