"""The event stream: schema, incremental reading, torn lines, run status from the pid."""

import json
import os
import subprocess
import sys

import pytest

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import EventReader, EventWriter, make_event, read_events
from tunewiz.engine.contract.run_summary import summarize


def test_every_event_has_version_time_type(tmp_path):
    w = EventWriter(tmp_path / "e.jsonl")
    w.emit("log", level="info", msg="hi")
    ev = read_events(tmp_path / "e.jsonl")[0]
    assert ev["v"] == 1 and ev["type"] == "log" and ev["t"] > 0


def test_missing_fields_are_a_bug():
    with pytest.raises(ValueError, match="lacks"):
        make_event("step", step=1)


def test_reader_is_incremental_and_skips_torn_lines(tmp_path):
    path = tmp_path / "e.jsonl"
    w = EventWriter(path)
    w.emit("log", level="info", msg="one")
    r = EventReader(path)
    assert [e["msg"] for e in r.read_new()] == ["one"]
    with open(path, "a") as f:
        f.write('{"not json\n')            # malformed line: skipped
        f.write(json.dumps({"v": 1, "t": 0, "type": "future_type"}) + "\n")  # unknown type: kept, ignored by summaries
        f.write('{"v": 1, "t": 0, "type": "log", "level": "info", "msg": "tw')  # torn last line: waits
    got = r.read_new()
    assert [e["type"] for e in got] == ["future_type"]
    with open(path, "a") as f:
        f.write('o"}\n')
    assert [e["msg"] for e in r.read_new()] == ["two"]


def test_summary_folds_progress(tmp_path):
    evs = [make_event("start", name="a", config={}, world_size=1, total_steps=10, model="m", params=1,
                      trainable_params=1),
           make_event("step", step=3, total=10, epoch=0.3, loss=1.5, lr=1e-4, grad_norm=1, tokens_per_s=1,
                      mem_gib=1, eta_s=7),
           make_event("done", status="completed", path="p")]
    s = summarize(evs)
    assert (s.name, s.step, s.total, s.loss, s.status, s.final_path) == ("a", 3, 10, 1.5, "completed", "p")


def test_dead_engine_shows_as_failed(tmp_path):
    run = rundir.new_run_dir(tmp_path, "x")
    (run / "config.yaml").write_text("name: x\n")
    w = EventWriter(run / "events.jsonl")
    w.emit("start", name="x", config={}, world_size=1, total_steps=5, model="m", params=1, trainable_params=1)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    rundir.write_state(run, pid=proc.pid, status="running")
    info = rundir.run_info(run)
    assert info.status == "failed" and "ended" in info.summary.error["msg"]
    rundir.write_state(run, pid=os.getpid())
    assert rundir.run_info(run).status == "running"


def test_run_dirs_never_collide(tmp_path):
    a, b = rundir.new_run_dir(tmp_path, "r"), rundir.new_run_dir(tmp_path, "r")
    assert a != b and a.is_dir() and b.is_dir()
