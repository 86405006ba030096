"""Bad input to `tunewiz train`: one line naming the problem and fix, exit 1, an error event,
and a run directory that keeps its config and logs and never looks complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import read_events
from support.runs import assert_user_error, only_run, write_config, write_data


def assert_failed_run(tmp: Path, kind: str) -> dict:
    run = only_run(tmp)
    evs = read_events(run / "events.jsonl")
    err = next(e for e in evs if e["type"] == "error")
    assert err["kind"] == kind and err["msg"] and "hint" in err
    assert evs[-1] == {**evs[-1], "type": "done", "status": "failed"}
    assert (run / "config.yaml").is_file() and (run / "logs").is_dir()
    assert not rundir.checkpoints(run)
    assert json.loads((run / "state.json").read_text())["status"] == "failed"
    return err


@pytest.mark.parametrize("case,content,needle", [
    ("missing", None, "d.jsonl"),
    ("empty", "", "empty"),
    ("malformed", '{"conversation": [{"input": "a", "output": "b"}]}\n{"conversation": [\n', "d.jsonl:2"),
    ("missing field", '{"conversation": [{"input": "a", "output": "b"}]}\n{"conversation": [{"input": "a"}]}\n',
     "d.jsonl:2"),
    ("wrong type", '{"conversation": [{"input": "a", "output": 5}]}\n', "d.jsonl:1"),
    ("unknown format", '{"prompt": "a", "completion": "b"}\n', "format"),
])
def test_bad_data(tiny_model, tmp_path, cli, case, content, needle):
    data = tmp_path / "d.jsonl"
    if content is not None:
        data.write_text(content)
    r = cli("train", str(write_config(tmp_path, tiny_model, data)))
    assert_user_error(r, needle)
    assert_failed_run(tmp_path, "data")


def test_empty_after_filtering(tiny_model, tmp_path, cli):
    data = tmp_path / "d.jsonl"
    data.write_text('{"conversation": []}\n')
    r = cli("train", str(write_config(tmp_path, tiny_model, data)))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert_failed_run(tmp_path, "data")


def test_model_path_missing(tmp_path, cli):
    r = cli("train", str(write_config(tmp_path, tmp_path / "no-model", write_data(tmp_path / "d.jsonl"))))
    assert_user_error(r, "does not exist")
    assert_failed_run(tmp_path, "model")


def test_not_a_causal_lm(tmp_path, cli):
    m = tmp_path / "bert"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    r = cli("train", str(write_config(tmp_path, m, write_data(tmp_path / "d.jsonl"))))
    assert_user_error(r, "not a causal language model")
    assert_failed_run(tmp_path, "model")


def test_remote_code_needs_opt_in(tmp_path, cli):
    m = tmp_path / "custom"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({
        "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"}}))
    r = cli("train", str(write_config(tmp_path, m, write_data(tmp_path / "d.jsonl"))))
    assert_user_error(r, "trust_remote_code")
    assert_failed_run(tmp_path, "model")


def test_qlora_without_cuda_suggests_lora(tiny_model, tmp_path, cli):
    r = cli("train", str(write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), method="qlora")))
    assert_user_error(r, "QLoRA needs a CUDA GPU")
    assert "method: lora" in r.stderr
    assert_failed_run(tmp_path, "model")


@pytest.mark.parametrize("text,needle", [
    ("name: t\ntrain:\n  lrr: 1\n", "config.yaml:3: unknown key train.lrr"),
    ("name: t\ntrain:\n  epochs: many\n", "train.epochs must be a number"),
])
def test_bad_config_names_the_key(tmp_path, cli, text, needle):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    r = cli("train", str(cfg), cwd=tmp_path)
    assert_user_error(r, needle)
    assert not (tmp_path / "work_dirs").exists()  # nothing half-written


def test_a_failed_cpu_allocation_is_an_oom_error_not_a_bug(tmp_path, capsys):
    """torch's CPU allocator fails with "DefaultCPUAllocator: can't allocate memory" (no
    "out of memory" in it): a CPU run that runs out of RAM gets the oom kind and a hint."""
    import torch

    from tunewiz.engine.contract.events import EventWriter, read_events
    from tunewiz.engine.train import oom_where, report_failure

    with pytest.raises(RuntimeError) as failed:
        torch.empty(2**62, dtype=torch.uint8)         # more than any machine has
    assert oom_where(failed.value) == "RAM"
    assert oom_where(ValueError("out of range")) is None
    events = EventWriter(tmp_path / "events.jsonl")
    assert report_failure(failed.value, events, tmp_path) == 1
    err = read_events(tmp_path / "events.jsonl")[-1]
    assert err["type"] == "error" and err["kind"] == "oom" and "RAM" in err["msg"]
    assert "batch_size" in err["hint"] and "--resume" in err["hint"]
    line = capsys.readouterr().err.strip()
    assert line.startswith("tunewiz: error: out of memory (RAM)") and "Traceback" not in line
