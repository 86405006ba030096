"""`tunewiz check-data` through the real CLI: reports on good data, file:line on bad data."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from support.cli import run_cli
from tunewiz.cli import main

CONV = {"conversation": [{"input": "Please introduce yourself", "output": "I am the assistant of tunewiz."},
                         {"input": "Who are you?", "output": "Your helper."}]}
OPENAI = {"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Your helper."}]}


def jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("check-data")
    conv = d / "conv.json"
    conv.write_text(json.dumps([CONV] * 3 + [{"conversation": [{"input": "x", "output": "long " * 60}]}], indent=2))
    chat = jsonl(d / "chat.jsonl", [OPENAI] * 2)
    text = jsonl(d / "text.jsonl", [{"text": "The quick brown fox jumps over the lazy dog."}] * 5)
    return {"conv": str(conv), "chat": chat, "text": text}


def test_reports_counts_histogram_and_the_trained_spans(data, tiny_model):
    r = run_cli("check-data", data["conv"], data["chat"], "--model", str(tiny_model), "--max-length", "64")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"{data['conv']}: format conversation" in out
    assert f"{data['chat']}: format openai" in out
    assert "records    6" in out
    assert "truncated  1 of 6 at 64 tokens" in out
    assert "tokens per sample:" in out and "█" in out
    # The first sample, rendered with the tokenizer's ChatML template, answers in [[...]].
    assert ("<|im_start|>user\nPlease introduce yourself<|im_end|>\n<|im_start|>assistant\n"
            "[[I am the assistant of tunewiz.<|im_end|>]]\n"
            "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n[[Your helper.<|im_end|>]]") in out
    assert "Traceback" not in r.stderr


# The cases below run the same command in-process (transformers is already loaded there),
# to keep the suite fast.

def test_json_report_is_one_object_with_the_trained_spans(data, tiny_model, capsys):
    assert main(["check-data", data["conv"], data["chat"], "--model", str(tiny_model), "--max-length", "64",
                 "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    report = json.loads(out)
    assert report["formats"] == {data["conv"]: "conversation", data["chat"]: "openai"}
    assert report["records"] == 6 and report["truncated"] == 1 and report["max_length"] == 64
    assert 0 < report["trained_tokens"] < report["tokens"]
    assert sum(b["count"] for b in report["length_histogram"]) == 6
    assert report["length_histogram"][-1]["hi"] == 64
    spans = report["first_sample"]["spans"]
    assert "".join(s["text"] for s in spans).startswith("<|im_start|>user\nPlease introduce yourself")
    assert [s["text"] for s in spans if s["trained"]] == ["I am the assistant of tunewiz.<|im_end|>",
                                                          "Your helper.<|im_end|>"]


def test_named_template_and_system(data, tiny_model, capsys):
    assert main(["check-data", data["conv"], "--model", str(tiny_model), "--template", "internlm2_chat",
                 "--system", "Be brief."]) == 0
    out = capsys.readouterr().out
    assert "template internlm2_chat" in out
    assert ("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nPlease introduce yourself<|im_end|>\n"
            "<|im_start|>assistant\n[[I am the assistant of tunewiz.<|im_end|>]]\n") in out


def test_pretrain_data_with_a_tokenizer_only_folder(data, tiny_model, tmp_path, capsys):
    # A folder with the tokenizer and config but no weights: check-data must not need them.
    for f in tiny_model.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, tmp_path / f.name)
    assert main(["check-data", data["text"], "--model", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stage pretrain" in out
    assert "<s>[[The quick brown fox jumps over the lazy dog.<|im_end|>]]" in out


# --------------------------------------------------------------------------- bad input

def one_error(r, where: str) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("tunewiz: error: ")
    assert where in lines[0]
    return lines[0]


def check(tmp_path, *files, extra=()):
    return run_cli("check-data", *map(str, files), "--model", str(tmp_path / "no-model-needed"), *extra)


def test_missing_file(tmp_path):
    one_error(check(tmp_path, tmp_path / "missing.json"), f"{tmp_path / 'missing.json'}: no such file")


def test_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    one_error(check(tmp_path, tmp_path / "e.jsonl"), f"{tmp_path / 'e.jsonl'}: the file is empty")


def test_not_utf8(tmp_path):
    (tmp_path / "b.json").write_bytes(b"\xff\xfe[")
    one_error(check(tmp_path, tmp_path / "b.json"), f"{tmp_path / 'b.json'}: not UTF-8")


def test_malformed_json_array(tmp_path):
    f = tmp_path / "m.json"
    f.write_text('[\n  {"text": "a"},\n  {"text": "b"\n  },\n  {"text": }\n]\n')
    one_error(check(tmp_path, f), f"{f}:5: not valid JSON")


def test_malformed_jsonl(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"\n')
    one_error(check(tmp_path, f), f"{f}:3: not valid JSON")


def test_wrong_typed_field(tmp_path):
    f = jsonl(tmp_path / "w.jsonl", [CONV, {"conversation": [{"input": "q", "output": ["a"]}]}])
    one_error(check(tmp_path, f), f"{f}:2: conversation[0].output must be text (got a list)")


def test_missing_field(tmp_path):
    f = jsonl(tmp_path / "w.jsonl", [OPENAI, {"messages": [{"role": "user"}]}])
    one_error(check(tmp_path, f), f"{f}:2: messages[0].content must be text (missing)")


def test_unknown_format(tmp_path):
    f = jsonl(tmp_path / "u.jsonl", [{"prompt": "a", "completion": "b"}])
    one_error(check(tmp_path, f), f"{f}:1: cannot tell the format")


def test_empty_after_filtering(tmp_path):
    f = jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": "<nooutput>"}])
    one_error(check(tmp_path, f), f"{f}: no usable records")


def test_unknown_format_option_and_template(tmp_path):
    f = jsonl(tmp_path / "t.jsonl", [{"text": "a"}])
    one_error(check(tmp_path, f, extra=("--format", "csv")), "unknown format 'csv'")
    one_error(check(tmp_path, f, extra=("--template", "internlm3")), "unknown template 'internlm3'")


def test_missing_model(tmp_path):
    f = jsonl(tmp_path / "t.jsonl", [{"text": "a"}])
    one_error(check(tmp_path, f), "does not exist")


def test_several_problems_are_all_listed(tmp_path):
    a = jsonl(tmp_path / "a.jsonl", [CONV, {"conversation": [{"input": 1, "output": "x"}]}])
    b = tmp_path / "b.jsonl"
    b.write_text('{"messages": []}\nnot json\n')
    r = check(tmp_path, a, b)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"{a}:2: conversation[0].input must be text (got a number)",
        f"{b}:1: messages is empty",
        f"{b}:2: not valid JSON (Expecting value)",
        "tunewiz: error: 3 problems in the data (fix the records listed above, or leave them out with --skip-bad)",
    ]


# --------------------------------------------------------------------------- data from other tools

def test_sharegpt_tool_calls_check_with_the_call_trained(tmp_path, tiny_model, capsys):
    record = {"conversations": [{"from": "human", "value": "Weather in Paris?"},
                                {"from": "function_call", "value": '{"name": "get_weather"}'},
                                {"from": "observation", "value": '{"temp": 21}'},
                                {"from": "gpt", "value": "It is 21 degrees."}],
              "tools": '[{"name": "get_weather"}]'}
    f = tmp_path / "glaive.json"
    f.write_text(json.dumps([record] * 153))
    assert main(["check-data", str(f), "--model", str(tiny_model), "--json"]) == 0
    spans = json.loads(capsys.readouterr().out)["first_sample"]["spans"]
    trained = [s["text"] for s in spans if s["trained"]]
    assert trained == ['{"name": "get_weather"}<|im_end|>', "It is 21 degrees.<|im_end|>"]


def test_openai_content_parts_check(tmp_path, tiny_model, capsys):
    record = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Who are you?"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "Your helper."}]}]}
    f = jsonl(tmp_path / "parts.jsonl", [record] * 500)
    assert main(["check-data", f, "--model", str(tiny_model)]) == 0
    assert "records    500" in capsys.readouterr().out


def test_multimodal_data_is_one_error(tmp_path):
    record = {"messages": [{"role": "user", "content": "<image>What is it?"},
                           {"role": "assistant", "content": "A cat."}], "images": ["cat.jpg"]}
    f = jsonl(tmp_path / "mllm.jsonl", [record] * 50)
    one_error(check(tmp_path, f), f"{f}:1: multimodal data is not supported: {f} has images")


def test_preference_data_is_one_error(tmp_path):
    record = {"conversations": [{"from": "human", "value": "Say hi"}],
              "chosen": {"from": "gpt", "value": "Hi!"}, "rejected": {"from": "gpt", "value": "No."}}
    f = jsonl(tmp_path / "dpo.jsonl", [record] * 50)
    one_error(check(tmp_path, f), f"preference (DPO/RM) data is not supported: {f}")


def test_unfilled_placeholders_are_a_warning_with_the_fix(tmp_path, tiny_model):
    f = tmp_path / "identity.json"
    f.write_text(json.dumps([{"instruction": "hi", "input": "", "output": "I am {{name}}, by {{author}}."}] * 3))
    r = run_cli("check-data", str(f), "--model", str(tiny_model))
    assert r.returncode == 0, r.stderr
    assert (f"warning: {f}: 3 records have unfilled placeholders {{{{name}}}}, {{{{author}}}}; replace them in "
            f"the file, e.g. sed -i 's/{{{{name}}}}/NAME/g; s/{{{{author}}}}/AUTHOR/g' {f}\n") in r.stdout
    subprocess.run(["sed", "-i", "s/{{name}}/NAME/g; s/{{author}}/AUTHOR/g", str(f)], check=True)
    r = run_cli("check-data", str(f), "--model", str(tiny_model))
    assert r.returncode == 0 and "warning" not in r.stdout and "I am NAME, by AUTHOR." in r.stdout


def test_skip_bad_leaves_out_broken_records_and_lists_the_first(tmp_path, tiny_model):
    lines = [json.dumps(OPENAI)] * 30
    for n in (3, 10, 11, 20, 25, 26, 29):
        lines[n - 1] = '{"messages": ['
    f = tmp_path / "big.jsonl"
    f.write_text("\n".join(lines) + "\n")
    failed = run_cli("check-data", str(f), "--model", str(tiny_model))
    assert failed.returncode == 1 and "leave them out with --skip-bad" in failed.stderr
    r = run_cli("check-data", str(f), "--model", str(tiny_model), "--skip-bad")
    assert r.returncode == 0, r.stderr
    [warning] = [line for line in r.stdout.splitlines() if line.startswith("warning:")]
    assert warning.startswith(f"warning: skipped 7 bad records (first 5 listed): {f}:3: not valid JSON")
    assert f"{f}:25: not valid JSON" in warning and f"{f}:26:" not in warning
    assert "records    23 (7 bad ones skipped)" in r.stdout   # the broken lines were no records
