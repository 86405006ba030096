"""Training through the real CLI on the tiny model: events, checkpoints, detach, stop, resume."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import read_events
from support.runs import losses, only_run, wait_until, write_config, write_data

def types(run: Path) -> list[str]:
    return [e["type"] for e in read_events(run / "events.jsonl")]


def test_lora_run_writes_the_contract(tiny_model, tmp_path, cli):
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"))
    r = cli("train", str(cfg))
    assert r.returncode == 0, r.stderr
    run = only_run(tmp_path)
    evs = read_events(run / "events.jsonl")
    kinds = [e["type"] for e in evs]
    assert kinds[0] == "progress" and "start" in kinds and kinds[-1] == "done"
    start = next(e for e in evs if e["type"] == "start")
    assert start["total_steps"] == 6 and start["trainable_params"] < start["params"]
    assert start["world_size"] == 1 and "truncated" in start
    assert start["loss"] == "fused"  # a Llama's plain output layer: the loss without full logits
    steps = [e for e in evs if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    for e in steps:
        assert {"loss", "lr", "grad_norm", "tokens_per_s", "mem_gib", "eta_s", "epoch", "total"} <= set(e)
    assert steps[-1]["loss"] < steps[0]["loss"]
    # Each step reports the rate it trained at: no warmup, so step 1 at the peak, then cosine down.
    assert steps[0]["lr"] == pytest.approx(1e-2) and all(a["lr"] > b["lr"] for a, b in zip(steps, steps[1:]))
    evals = [e for e in evs if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [0, 3, 6]
    assert evals[0]["samples"][0]["input"] == "Who are you?"
    assert [e["step"] for e in evs if e["type"] == "checkpoint"] == [3, 6]
    assert evs[-1]["status"] == "completed" and evs[-1]["path"].endswith("step-6")
    ck = run / "checkpoints" / "step-6"
    for f in ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "trainer_state.json"):
        assert (ck / f).is_file(), f
    assert (run / "eval" / "step-0.txt").is_file() and (run / "logs" / "rank0.log").stat().st_size > 0
    assert json.loads((run / "state.json").read_text())["status"] == "completed"
    assert yaml.safe_load((run / "config.yaml").read_text())["method"] == "lora"
    r = cli("runs", "--output-dir", str(tmp_path / "runs"))
    assert "completed" in r.stdout and "6/6" in r.stdout


def test_second_run_never_overwrites_the_first(tiny_model, tmp_path, cli):
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), train__max_steps=1)
    assert cli("train", str(cfg)).returncode == 0
    assert cli("train", str(cfg)).returncode == 0
    runs = rundir.list_runs(tmp_path / "runs")
    assert len(runs) == 2 and all(types(r)[-1] == "done" for r in runs)
    # --resume with the config continues the newest run of that name, in place
    assert cli("train", str(cfg), "--resume").returncode == 0
    assert rundir.list_runs(tmp_path / "runs") == runs
    assert types(runs[0]).count("start") == 2 and types(runs[1]).count("start") == 1


RESUME_OVER = dict(train__max_steps=60, train__save_every=5, lora={"r": 8, "alpha": 16, "dropout": 0.1},
                   eval={"inputs": [], "every": 0})


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tmp_path_factory):
    """Losses of the reference run that the interrupted ones must reproduce."""
    from support.cli import run_cli

    tmp = tmp_path_factory.mktemp("ref")
    data = write_data(tmp / "d.jsonl", n=24)
    assert run_cli("train", str(write_config(tmp, tiny_model, data, **RESUME_OVER))).returncode == 0
    return data, losses(only_run(tmp))


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_resume_matches_an_uninterrupted_run(tiny_model, tmp_path, cli, how, uninterrupted):
    """Stopped gracefully (or killed) after a checkpoint, then resumed: same final loss."""
    data, ref = uninterrupted
    r = cli("train", str(write_config(tmp_path, tiny_model, data, **RESUME_OVER)), "--detach")
    assert r.returncode == 0, r.stderr
    run = Path(r.stdout.strip().splitlines()[-1])
    assert wait_until(lambda: len(rundir.checkpoints(run)) >= 1)
    if how == "stop":
        assert cli("stop", str(run), "--wait").returncode == 0
        assert read_events(run / "events.jsonl")[-1]["status"] == "stopped"
    else:
        os.kill(json.loads((run / "state.json").read_text())["pid"], signal.SIGKILL)
        assert wait_until(lambda: rundir.run_info(run).status == "failed", 10)
    assert max(losses(run)) < 60, "the run finished before it could be interrupted"
    r = cli("train", str(run), "--resume")
    assert r.returncode == 0, r.stderr
    got = losses(run)
    assert max(got) == 60
    assert got[60] == pytest.approx(ref[60], rel=1e-4, abs=1e-5)
    starts = [e for e in read_events(run / "events.jsonl") if e["type"] == "start"]
    assert starts[-1]["resumed_from"].endswith(f"step-{starts[-1]['step']}")
    assert read_events(run / "events.jsonl")[-1]["status"] == "completed"


def test_detach_returns_at_once(tiny_model, tmp_path, cli):
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"))
    r = cli("train", str(cfg), "--detach")
    assert r.returncode == 0
    run = Path(r.stdout.strip().splitlines()[-1])
    state = json.loads((run / "state.json").read_text())
    assert state["pid"] != os.getpid()
    assert wait_until(lambda: rundir.run_info(run).status == "completed")


def test_foreground_run_survives_a_closed_terminal(tiny_model, tmp_path):
    """An SSH drop closes the terminal and sends SIGHUP: the run carries on and completes."""
    import subprocess

    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), train__max_steps=30)
    proc = subprocess.Popen([sys.executable, "-m", "tunewiz", "train", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert wait_until(lambda: rundir.list_runs(tmp_path / "runs") and
                     any(e["type"] == "step" for e in read_events(only_run(tmp_path) / "events.jsonl")))
    proc.stdout.close()
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=120) == 0
    run = only_run(tmp_path)
    assert read_events(run / "events.jsonl")[-1]["status"] == "completed"
    assert "step 30/30" in (run / "logs" / "rank0.log").read_text()


def test_checkpoint_being_written_is_not_listed(tmp_path):
    """A checkpoint gets its marker inside step-N.tmp just before the rename; a reader
    polling at that moment (attach, convert, the TUI) must neither list nor trip on it."""
    for name in ("step-10", "step-5", "step-15.tmp", "step-20"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        if name != "step-20":  # step-20: marker not written yet
            (tmp_path / "checkpoints" / name / "trainer_state.json").write_text("{}")
    assert [p.name for p in rundir.checkpoints(tmp_path)] == ["step-5", "step-10"]


def test_reported_tokens_per_s_is_the_wall_clock_rate(tiny_model, tmp_path, cli):
    """The step time behind tokens_per_s lies inside the gap between two step events (it
    ends after the step's host sync, before its event), and it fills most of that gap (no
    eval or checkpoint between steps here): a rate that reads high or low fails."""
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl", n=32), train__max_steps=8,
                       train__save_every=100, eval__inputs=[], eval__every=0)
    r = cli("train", str(cfg))
    assert r.returncode == 0, r.stderr
    steps = [e for e in read_events(only_run(tmp_path) / "events.jsonl") if e["type"] == "step"]
    assert len(steps) == 8
    for e in steps:
        assert 0 < e["trained_tokens"] <= e["tokens"]
        assert e["trained_tokens_per_s"] == pytest.approx(e["tokens_per_s"] * e["trained_tokens"] / e["tokens"],
                                                         rel=1e-3, abs=0.2)
    implied = [e["tokens"] / e["tokens_per_s"] for e in steps]   # seconds each step took, as reported
    for prev, e, dt in zip(steps, steps[1:], implied[1:]):
        assert dt <= e["t"] - prev["t"] + 1e-3                   # step k began after step k-1's event
    # From step 2's event on (after step 1 the recipe runs a one-off garbage collection):
    wall = steps[-1]["t"] - steps[1]["t"]
    assert sum(implied[2:]) >= 0.5 * wall                        # and the steps are most of the time
