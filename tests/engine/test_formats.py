"""Reading every data format, and naming file:line for every kind of bad input."""

from __future__ import annotations

import json

import pytest

from tunewiz.engine.contract.errors import DataError
from tunewiz.engine.contract.formats import MAX_ERRORS, DataErrors, detect_format, load_samples

CHAT = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "Your helper."}]


def write(tmp_path, name, records=None, text=None, jsonl=False, indent=None):
    p = tmp_path / name
    if text is None:
        text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n" if jsonl \
            else json.dumps(records, ensure_ascii=False, indent=indent)
    p.write_text(text, encoding="utf-8")
    return str(p)


def only_problem(exc_info) -> str:
    e = exc_info.value
    return e.problems[0] if isinstance(e, DataErrors) else e.msg


@pytest.mark.parametrize("jsonl", [False, True])
def test_every_format_normalizes_to_messages(tmp_path, jsonl):
    cases = {
        "conversation": {"conversation": [{"system": "Be kind.", "input": "Who are you?", "output": "Your helper."}]},
        "openai": {"messages": CHAT},
        "sharegpt": {"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Who are you?"},
                                       {"from": "gpt", "value": "Your helper."}]},
    }
    for fmt, record in cases.items():
        f = write(tmp_path, f"{fmt}.json", [record, record], jsonl=jsonl)
        data = load_samples([f])
        assert data.formats == {f: fmt}
        assert [s.messages for s in data.samples] == [CHAT, CHAT]
        assert data.samples[1].source == f"{f}:2" if jsonl else data.samples[1].source.startswith(f + ":")


def test_alpaca_and_pretrain(tmp_path):
    f = write(tmp_path, "alpaca.json", [{"instruction": "Translate", "input": "hallo", "output": "hello"},
                                        {"instruction": "Say hi", "output": "hi"},
                                        {"instruction": "Nothing", "input": "", "output": "<nooutput>"}])
    data = load_samples([f])
    assert data.formats[f] == "alpaca"
    assert data.samples[0].messages == [{"role": "user", "content": "Translate\nhallo"},
                                        {"role": "assistant", "content": "hello"}]
    assert data.samples[1].messages[0]["content"] == "Say hi"
    assert (data.records, data.filtered, len(data.samples)) == (3, 1, 2)

    t = write(tmp_path, "text.jsonl", [{"text": "  New knowledge.  "}], jsonl=True)
    s = load_samples([t]).samples[0]
    assert (s.text, s.messages, s.is_chat) == ("New knowledge.", [], False)


def test_mixed_files_and_single_object(tmp_path):
    a = write(tmp_path, "a.jsonl", [{"messages": CHAT}], jsonl=True)
    b = write(tmp_path, "b.json", {"conversation": [{"input": "q", "output": "a"}]}, indent=2)
    data = load_samples([a, b])
    assert data.formats == {a: "openai", b: "conversation"}
    assert [s.source for s in data.samples] == [f"{a}:1", f"{b}:1"]


def test_json_array_lines_point_at_each_record(tmp_path):
    f = write(tmp_path, "d.json", [{"text": "one"}, {"text": "two"}, {"text": "three"}], indent=2)
    # json.dumps(indent=2) puts each record over 3 lines after the opening "[".
    assert [s.source for s in load_samples([f]).samples] == [f"{f}:2", f"{f}:5", f"{f}:8"]


def test_jsonl_skips_blank_lines_and_counts_them(tmp_path):
    f = write(tmp_path, "d.jsonl", text='{"text": "a"}\n\n{"text": "b"}\n')
    assert [s.source for s in load_samples([f]).samples] == [f"{f}:1", f"{f}:3"]


def test_detect_format():
    assert detect_format({"text": "x"}) == "pretrain"
    assert detect_format({"instruction": "x", "output": "y"}) == "alpaca"
    assert detect_format({"prompt": "x"}) is None
    assert detect_format([1]) is None


# --------------------------------------------------------------------------- bad input

def test_missing_file(tmp_path):
    with pytest.raises(DataError) as e:
        load_samples([str(tmp_path / "nope.json")])
    assert only_problem(e) == f"{tmp_path / 'nope.json'}: no such file"


def test_empty_file(tmp_path):
    f = write(tmp_path, "e.json", text="  \n")
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert only_problem(e) == f"{f}: the file is empty"


def test_not_utf8(tmp_path):
    p = tmp_path / "b.json"
    p.write_bytes(b'[{"text": "\xff\xfe"}]')
    with pytest.raises(DataError) as e:
        load_samples([str(p)])
    assert "not UTF-8" in only_problem(e)


def test_malformed_json_array_names_the_line(tmp_path):
    f = write(tmp_path, "m.json", text='[\n  {"text": "a"},\n  {"text": "b"}\n  {"text": "c"}\n]\n')
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert only_problem(e) == f"{f}:4: not valid JSON (expected , or ] between records)"

    f = write(tmp_path, "m2.json", text='[\n  {"text": "a"},\n  {"text": "b",}\n]\n')
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert only_problem(e).startswith(f"{f}:3: not valid JSON")


def test_malformed_jsonl_line_and_the_rest_still_checked(tmp_path):
    f = write(tmp_path, "m.jsonl", text='{"text": "a"}\n{"text": "b"\n{"text": 3}\n')
    with pytest.raises(DataErrors) as e:
        load_samples([f])
    assert e.value.problems == [f"{f}:2: not valid JSON (Expecting ',' delimiter)",
                                f"{f}:3: text must be text (got a number)"]
    assert e.value.msg == f"{f}:2: not valid JSON (Expecting ',' delimiter) (and 1 more problem)"


@pytest.mark.parametrize("record, problem", [
    ({"conversation": [{"input": "q", "output": 3}]}, "conversation[0].output must be text (got a number)"),
    ({"conversation": [{"input": "q"}]}, "conversation[0].output must be text (missing)"),
    ({"conversation": []}, "conversation is empty"),
    ({"conversation": ["q"]}, "conversation[0] must be an object (got text)"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role must be one of system, user, assistant (got 'bot')"),
    ({"messages": [{"role": "user", "content": "x"}]}, "messages has no assistant answer to train on"),
    ({"conversations": [{"from": "human", "value": None}]}, "conversations[0].value must be text (missing)"),
    ({"conversations": [{"from": "robot", "value": "x"}]}, "conversations[0].from must be human, gpt, system, function_call or observation (got 'robot')"),
    ({"instruction": 1, "output": "y"}, "instruction must be text (got a number)"),
    ({"text": ""}, "text is empty"),
])
def test_wrong_fields_name_file_line_and_field(tmp_path, record, problem):
    f = write(tmp_path, "w.jsonl", [record], jsonl=True)
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert only_problem(e) == f"{f}:1: {problem}"


def test_record_of_another_format_in_a_detected_file(tmp_path):
    f = write(tmp_path, "x.jsonl", [{"text": "a"}, {"messages": CHAT}], jsonl=True)
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert only_problem(e) == f"{f}:2: text must be text (missing)"


def test_forced_format_validates_against_it(tmp_path):
    f = write(tmp_path, "x.jsonl", [{"text": "a"}], jsonl=True)
    with pytest.raises(DataError) as e:
        load_samples([f], "openai")
    assert only_problem(e) == f"{f}:1: missing messages"


def test_unknown_format(tmp_path):
    f = write(tmp_path, "u.jsonl", [{"prompt": "a", "completion": "b"}], jsonl=True)
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert only_problem(e).startswith(f"{f}:1: cannot tell the format from this record (prompt, completion)")
    with pytest.raises(DataError):
        load_samples([f], "csv")


def test_record_not_an_object(tmp_path):
    f = write(tmp_path, "n.json", [{"text": "a"}, ["b"]])
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert only_problem(e) == f"{f}:1: a record must be a JSON object (got a list)"


def test_empty_after_filtering(tmp_path):
    f = write(tmp_path, "f.json", [{"instruction": "x", "output": "<nooutput>"}])
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert "no usable records (1 read, 1 dropped)" in e.value.msg


def test_errors_are_collected_up_to_a_limit(tmp_path):
    f = write(tmp_path, "many.jsonl", [{"text": i} for i in range(MAX_ERRORS + 5)], jsonl=True)
    with pytest.raises(DataErrors) as e:
        load_samples([f])
    assert len(e.value.problems) == MAX_ERRORS and e.value.total == MAX_ERRORS + 5
    assert e.value.problems[-1] == f"{f}:{MAX_ERRORS}: text must be text (got a number)"
    assert f"(and {MAX_ERRORS + 4} more problems)" in e.value.msg


def test_every_config_format_has_a_parser():
    """One list of formats: the config's DataFormat choices (less auto) are what the readers parse."""
    import typing

    from tunewiz.engine.contract import formats
    from tunewiz.engine.contract.config import DataFormat

    assert set(formats.FORMATS) == set(typing.get_args(DataFormat)) - {"auto"}
    assert set(formats._PARSERS) == set(formats.FORMATS)
