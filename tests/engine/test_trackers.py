"""train.report_to: a real tiny-model run also logs to TensorBoard and W&B (offline), with the
same losses its step events carry and the eval answers as text."""

from __future__ import annotations

import pytest

from tunewiz.engine.contract.config import ConfigError, config_from_dict
from tunewiz.engine.contract.events import read_events
from support.runs import only_run, write_config, write_data


def test_report_to_takes_a_name_or_a_list_and_refuses_unknown_ones():
    assert config_from_dict({"train": {"report_to": "wandb"}}).train.report_to == ["wandb"]
    assert config_from_dict({}).train.report_to == []
    with pytest.raises(ConfigError) as refused:
        config_from_dict({"train": {"report_to": ["tensorbord"]}})
    assert "'tensorbord' is not a tracker" in refused.value.one_line()
    assert "did you mean tensorboard" in refused.value.one_line()


def test_a_run_logs_its_step_losses_and_eval_answers_to_both_trackers(tiny_model, tmp_path, cli, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"),
                       train__report_to=["tensorboard", "wandb"])
    for name in ("WANDB_API_KEY", "WANDB_MODE"):   # no account here: W&B must record offline
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))       # and no key in a ~/.netrc either
    r = cli("train", str(cfg))
    assert r.returncode == 0, r.stderr
    run = only_run(tmp_path)
    evs = read_events(run / "events.jsonl")
    step_losses = [e["loss"] for e in evs if e["type"] == "step"]
    answers = [s["output"] for e in evs if e["type"] == "eval" for s in e["samples"]]

    board = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    board.Reload()
    assert [s.step for s in board.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [s.value for s in board.Scalars("train/loss")] == pytest.approx(step_losses, rel=1e-6)
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s", "train/mem_gib"} <= set(board.Tags()["scalars"])
    texts = [t.tensor_proto.string_val[0].decode() for t in board.Tensors("eval/answers/text_summary")]
    assert len(texts) == 3 and all(a in "".join(texts) for a in answers)

    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("run-*.wandb"))[0].stat().st_size > 0
    tables = sorted((offline[0] / "files" / "media" / "table" / "eval").glob("answers_*.table.json"))
    assert len(tables) == 3 and "Who are you?" in tables[0].read_text()
