"""Datasets as users bring them from other tools: tool calls, content parts, multimodal and
preference sets, identity placeholders, and large sets with a few broken records."""

from __future__ import annotations

import json

import pytest

from tunewiz.engine.contract.errors import DataError
from tunewiz.engine.contract.formats import DataErrors, SampleStream, load_samples

TOOLS = json.dumps([{"name": "get_weather", "description": "Weather of a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
TOOL_CALL = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
TOOL_RECORD = {"conversations": [{"from": "human", "value": "Weather in Paris?"},
                                 {"from": "function_call", "value": TOOL_CALL},
                                 {"from": "observation", "value": '{"temp": 21}'},
                                 {"from": "gpt", "value": "It is 21 degrees in Paris."}],
               "tools": TOOLS}


def write(tmp_path, name, records):
    p = tmp_path / name
    p.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return str(p)


def write_jsonl(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
                 encoding="utf-8")
    return str(p)


def one_line_error(files, **kwargs) -> DataError:
    with pytest.raises(DataError) as e:
        load_samples(files, **kwargs)
    err = e.value
    assert getattr(err, "total", 1) == 1, getattr(err, "problems", None)
    assert "\n" not in err.one_line()
    return err


# --------------------------------------------------------------------------- tool calls

def test_sharegpt_tool_calls_train_the_call_and_read_the_observation(tmp_path):
    f = write(tmp_path, "glaive.json", [TOOL_RECORD] * 153)
    data = load_samples([f])
    assert len(data.samples) == 153 and data.formats == {f: "sharegpt"}
    system, *turns = data.samples[0].messages
    assert system["role"] == "system" and TOOLS in system["content"]
    assert turns == [{"role": "user", "content": "Weather in Paris?"},
                     {"role": "assistant", "content": TOOL_CALL},
                     {"role": "user", "content": '{"temp": 21}'},
                     {"role": "assistant", "content": "It is 21 degrees in Paris."}]


def test_sharegpt_record_system_and_tools_share_the_system_message(tmp_path):
    record = {**TOOL_RECORD, "system": "You are a weather bot.", "tools": json.loads(TOOLS)}
    system = load_samples([write(tmp_path, "t.json", [record])]).samples[0].messages[0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are a weather bot.") and '"get_weather"' in system["content"]


def test_tool_calls_encode_with_the_call_trained_and_the_observation_masked(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    from tunewiz.engine.encode import IGNORE, Encoder

    tok = AutoTokenizer.from_pretrained(tiny_model)
    sample = load_samples([write(tmp_path, "t.json", [TOOL_RECORD])]).samples[0]
    enc = Encoder(tok, "auto").encode(sample)
    trained = tok.decode([i for i, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])
    assert "get_weather" in trained and "21 degrees" in trained
    assert '{"temp": 21}' not in trained and "Weather in Paris?" not in trained


# --------------------------------------------------------------------------- content parts

def test_openai_text_parts_are_joined(tmp_path):
    record = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Who are"},
                                                        {"type": "text", "text": "you?"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "Your helper."}]}]}
    f = write(tmp_path, "parts.json", [record] * 500)
    samples = load_samples([f]).samples
    assert len(samples) == 500
    assert samples[0].messages == [{"role": "user", "content": "Who are\nyou?"},
                                   {"role": "assistant", "content": "Your helper."}]


def test_a_content_part_without_text_names_the_field(tmp_path):
    record = {"messages": [{"role": "user", "content": [{"type": "text"}]},
                           {"role": "assistant", "content": "a"}]}
    err = one_line_error([write_jsonl(tmp_path, "p.jsonl", [record])])
    assert "p.jsonl:1: messages[0].content[0].text must be text (missing)" in err.msg


# --------------------------------------------------------------------------- multimodal

MULTIMODAL = {
    "images key": {"messages": [{"role": "user", "content": "<image>What is this?"},
                                {"role": "assistant", "content": "A cat."}], "images": ["cat.jpg"]},
    "videos key, sharegpt": {"conversations": [{"from": "human", "value": "Describe it"},
                                               {"from": "gpt", "value": "A dog runs."}], "videos": ["dog.mp4"]},
    "<image> token only": {"instruction": "<image>Name the animal", "output": "A cat."},
    "image_url part": {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/cat.jpg"}}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": "A cat."}]},
}


@pytest.mark.parametrize("case", MULTIMODAL)
def test_multimodal_data_is_refused_in_one_line(tmp_path, case):
    f = write(tmp_path, "mllm.json", [MULTIMODAL[case]] * 200)
    err = one_line_error([f])
    assert f"multimodal data is not supported: {f} has " in err.msg
    assert err.msg.startswith(f"{f}:2: ")


def test_an_empty_images_list_is_text_data(tmp_path):
    record = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "images": []}
    assert len(load_samples([write(tmp_path, "t.json", [record])]).samples) == 1


# --------------------------------------------------------------------------- preference

PREFERENCE = {
    "alpaca-like": {"instruction": "Say hi", "input": "", "chosen": "Hi!", "rejected": "Go away."},
    "sharegpt-like": {"conversations": [{"from": "human", "value": "Say hi"}],
                      "chosen": {"from": "gpt", "value": "Hi!"}, "rejected": {"from": "gpt", "value": "No."}},
}


@pytest.mark.parametrize("case", PREFERENCE)
def test_preference_data_is_refused_in_one_line(tmp_path, case):
    f = write(tmp_path, "dpo.json", [PREFERENCE[case]] * 300)
    err = one_line_error([f])
    assert f"preference (DPO/RM) data is not supported: {f}" in err.msg


def test_a_refused_file_does_not_hide_the_problems_of_another(tmp_path):
    dpo = write(tmp_path, "dpo.json", [PREFERENCE["alpaca-like"]] * 5)
    bad = write_jsonl(tmp_path, "bad.jsonl", [{"text": 1}, {"text": 2}])
    with pytest.raises(DataErrors) as e:
        load_samples([dpo, bad])
    assert e.value.total == 3
    assert [p.split(": ")[0] for p in e.value.problems] == [f"{dpo}:2", f"{bad}:1", f"{bad}:2"]


# --------------------------------------------------------------------------- placeholders

IDENTITY = [{"instruction": "hi", "input": "", "output": "Hello! I am {{name}}, an AI assistant developed by "
                                                             "{{author}}."},
            {"instruction": "Who are you?", "input": "", "output": "I am {{name}}."},
            {"instruction": "2+2?", "input": "", "output": "4"}]


def test_unfilled_placeholders_are_warned_with_the_fix(tmp_path):
    f = write(tmp_path, "identity.json", IDENTITY)
    stream = SampleStream([f])
    assert len(list(stream)) == 3
    stream.raise_if_problems()
    [warning] = stream.warnings()
    assert warning.startswith(f"{f}: 2 records have unfilled placeholders {{{{name}}}}, {{{{author}}}}")
    assert f"sed -i 's/{{{{name}}}}/NAME/g; s/{{{{author}}}}/AUTHOR/g' {f}" in warning


def test_filled_data_has_no_warning(tmp_path):
    filled = [{**r, "output": r["output"].replace("{{name}}", "Wiz").replace("{{author}}", "Ada")} for r in IDENTITY]
    stream = SampleStream([write(tmp_path, "identity.json", filled)])
    list(stream)
    assert stream.warnings() == []


# --------------------------------------------------------------------------- skipping bad records

def broken_set(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    lines = [good] * 20
    for n in (3, 7, 9, 12, 15, 18, 19):
        lines[n - 1] = {"messages": [{"role": "user", "content": "q"}]} if n % 2 else '{"messages": ['
    return write_jsonl(tmp_path, "big.jsonl", lines)


def test_bad_records_fail_the_data_by_default(tmp_path):
    f = broken_set(tmp_path)
    with pytest.raises(DataErrors) as e:
        load_samples([f])
    assert e.value.total == 7


def test_skip_invalid_leaves_out_bad_records_and_says_which(tmp_path):
    f = broken_set(tmp_path)
    stream = SampleStream([f], skip_invalid=True)
    assert len(list(stream)) == 13
    stream.raise_if_problems()
    [warning] = stream.warnings()
    assert warning.startswith(f"skipped 7 bad records (first 5 listed): {f}:3: messages has no assistant answer")
    assert f"{f}:12: not valid JSON" in warning and f"{f}:18:" not in warning


def test_skip_invalid_still_fails_on_a_missing_file_and_on_no_records(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_samples([str(tmp_path / "gone.jsonl")], skip_invalid=True)
    f = write_jsonl(tmp_path, "all-bad.jsonl", [{"text": 1}, {"text": 2}])
    with pytest.raises(DataError, match="no usable records"):
        load_samples([f], skip_invalid=True)
