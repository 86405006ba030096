"""Run integrity: one writer per run, whole checkpoints, a full disk, no pickle, no writes
outside the run, a true status. Real processes through the CLI, waiting on events and
files, never on the clock."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.runs import one_line_error, only_run, wait_until, write_config, write_data
from tunewiz.engine import checkpoint
from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.errors import DiskFullError
from tunewiz.engine.contract.events import EventWriter, read_events
from tunewiz.engine.contract.processes import pid_alive
from tunewiz.engine.train import report_failure

LONG = dict(train__max_steps=100000, train__save_every=100000, eval={"inputs": [], "every": 0})


def _events(run: Path) -> list[dict]:
    return read_events(run / rundir.EVENTS)


def _stopped(run: Path, cli) -> None:
    assert cli("stop", str(run), "--wait").returncode == 0
    last = _events(run)[-1]
    assert last["type"] == "done" and last["status"] == "stopped", last


@pytest.fixture
def detached(tiny_model, tmp_path, cli):
    """Start a long detached run; whatever the test does, it never outlives the test."""
    runs = []

    def start() -> Path:
        cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), **LONG)
        r = cli("train", str(cfg), "--detach")
        assert r.returncode == 0, r.stderr
        runs.append(Path(r.stdout.strip().splitlines()[-1]))
        return runs[-1]

    yield start
    for run in runs:
        pgid = rundir.read_state(run).get("pgid")
        if pgid and pid_alive(rundir.read_state(run).get("pid")):
            os.killpg(pgid, signal.SIGKILL)


# ---------------------------------------------------------------- 2: one writer per run

def test_a_second_writer_is_refused_while_the_run_trains(detached, cli):
    run = detached()
    assert wait_until(lambda: any(e["type"] == "step" for e in _events(run)))
    pid = rundir.read_state(run)["pid"]
    before = [e["type"] for e in _events(run)].count("start")
    for extra in ((), ("--detach",)):
        line = one_line_error(cli("train", str(run), "--resume", *extra))
        assert f"pid {pid}" in line and f"tunewiz stop {run}" in line and f"tunewiz attach {run}" in line
    # Nothing of the run was touched: the same pid, no second start, no done event.
    assert rundir.read_state(run)["pid"] == pid and rundir.read_state(run)["status"] == "running"
    assert [e["type"] for e in _events(run)].count("start") == before
    assert "done" not in [e["type"] for e in _events(run)]
    _stopped(run, cli)
    # Once the holder has gone the lock is free again (the kernel drops it with the process).
    assert wait_until(lambda: not pid_alive(pid))
    os.close(rundir.lock_run(run))


# ---------------------------------------------------------------- 3: whole checkpoints

def test_checkpoints_in_flight_or_leaving_are_never_listed_and_are_cleaned(tmp_path):
    ck = tmp_path / "checkpoints"
    for name in ("step-2", "step-4.old", "step-6.tmp", "step-8"):
        (ck / name).mkdir(parents=True)
        (ck / name / "trainer_state.json").write_text("{}")
        (ck / name / "optimizer.pt").write_text("x")
    (tmp_path / ".state.json.123.tmp").write_text("{")
    assert [p.name for p in rundir.checkpoints(tmp_path)] == ["step-2", "step-8"]
    assert sorted(rundir.clean_stale(tmp_path)) == [".state.json.123.tmp", "step-4.old", "step-6.tmp"]
    assert sorted(p.name for p in ck.iterdir()) == ["step-2", "step-8"]


def test_rotation_unlists_before_it_deletes(tmp_path, monkeypatch):
    """Each file deletion during rotation sees the old checkpoint already unlisted."""
    for step in (1, 2):
        (tmp_path / "checkpoints" / f"step-{step}").mkdir(parents=True)
        for f in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"):
            (tmp_path / "checkpoints" / f"step-{step}" / f).write_text("x")
    seen = []
    real_unlink = Path.unlink

    def unlink(self, *a, **k):
        seen.append([p.name for p in rundir.checkpoints(tmp_path)])
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", unlink)
    checkpoint._rotate(tmp_path, keep=1)
    assert seen and all(names == ["step-2"] for names in seen)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-2"]


# ---------------------------------------------------------------- 4: a full disk (events)

def test_a_writer_finishes_a_torn_last_line_before_its_first_event(tmp_path):
    path = tmp_path / "events.jsonl"
    EventWriter(path).emit("log", level="info", msg="one")
    with open(path, "ab") as f:
        f.write(b'{"v": 1, "t": 0, "type": "done", "sta')  # killed (or disk full) mid-line
    w = EventWriter(path)
    w.emit("log", level="info", msg="two")
    w.close()
    assert [e.get("msg") for e in read_events(path)] == ["one", "two"]
    assert path.read_bytes().endswith(b"\n")


def test_a_full_disk_is_a_one_line_user_error_in_the_event_writer(tmp_path, capsys):
    w = EventWriter("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(DiskFullError, match="/dev/full"):
        w.emit("log", level="info", msg="x")
    assert w.try_emit("done", status="failed", path=None) is False
    # The failure being reported on that disk still ends as exit 1 with one line.
    assert report_failure(OSError(28, "No space left on device", str(tmp_path / "x")), w, tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left" in err[0] and "free space" in err[0]
    w.close()


# ---------------------------------------------------------------- 6: no pickle from a run

class _Payload:
    """Unpickling this runs a shell command (what a planted checkpoint file could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    """A completed 2-step run with a checkpoint; tests copy it before they plant files."""
    from support.cli import run_cli

    tmp = tmp_path_factory.mktemp("finished")
    cfg = write_config(tmp, tiny_model, write_data(tmp / "d.jsonl"), train__max_steps=2, train__save_every=1,
                       eval={"inputs": [], "every": 0})
    assert run_cli("train", str(cfg)).returncode == 0
    return only_run(tmp)


def _copy_run(run: Path, dest: Path) -> Path:
    out = dest / "runs" / run.name
    shutil.copytree(run, out, symlinks=True)
    return out


@pytest.mark.parametrize("planted", ["optimizer.pt", "rng-rank0.pt"])
def test_a_planted_pickle_in_a_checkpoint_never_runs(finished_run, tmp_path, cli, planted):
    import torch

    run = _copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    ckpt = rundir.checkpoints(run)[-1]
    torch.save({"state": _Payload(marker)}, ckpt / planted)
    line = one_line_error(cli("train", str(run), "--resume"), alone=False)
    assert not marker.exists(), "the planted pickle ran"
    assert str(ckpt / planted) in line and "posix.system, which could run code" in line
    assert "weights_only" not in line
    err = [e for e in _events(run) if e["type"] == "error"][-1]
    assert err["kind"] == "checkpoint" and _events(run)[-1]["status"] == "failed"


# ---------------------------------------------------------------- 7: never outside the run

@pytest.mark.parametrize("name", ["checkpoints", "eval", "logs"])
def test_links_leading_out_of_the_run_are_refused(finished_run, tmp_path, cli, name):
    run = _copy_run(finished_run, tmp_path)
    victim = tmp_path / "other-run" / name
    shutil.copytree(run / name, victim) if (run / name).exists() else victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("not yours")
    before = sorted(str(p.relative_to(victim)) for p in victim.rglob("*"))
    shutil.rmtree(run / name, ignore_errors=True)
    (run / name).symlink_to(victim, target_is_directory=True)
    line = one_line_error(cli("train", str(run), "--resume"))
    assert str(run / name) in line and "outside the run" in line
    assert sorted(str(p.relative_to(victim)) for p in victim.rglob("*")) == before
    err = [e for e in _events(run) if e["type"] == "error"][-1]
    assert err["kind"] == "config" and str(run / name) in err["msg"]


def test_a_checkpoint_linked_from_elsewhere_is_refused(finished_run, tmp_path, cli):
    run = _copy_run(finished_run, tmp_path)
    elsewhere = tmp_path / "elsewhere" / "step-99"
    shutil.copytree(rundir.checkpoints(run)[-1], elsewhere)
    (run / "checkpoints" / "step-99").symlink_to(elsewhere, target_is_directory=True)
    line = one_line_error(cli("train", str(run), "--resume"))
    assert "step-99" in line and elsewhere.is_dir() and (elsewhere / "trainer_state.json").is_file()


# ---------------------------------------------------------------- 14: a true status

def test_stop_right_after_detach_ends_stopped_with_a_done_event(detached, cli):
    run = detached()
    # At once: the supervisor is still importing its libraries.
    assert cli("stop", str(run), "--wait").returncode == 0
    evs = _events(run)
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "stopped", evs[-3:]
    assert not [e for e in evs if e["type"] == "error"]
    assert rundir.read_state(run)["status"] == "stopped" and rundir.run_info(run).status == "stopped"


def test_a_zombie_engine_counts_as_dead(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    # Not reaped: it stays a zombie of this process until wait().
    assert wait_until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] == "Z", 30)
    assert not pid_alive(proc.pid)
    run = rundir.new_run_dir(tmp_path, "z")
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "z"}))
    EventWriter(run / "events.jsonl").emit("start", name="z", config={}, world_size=1, total_steps=5, model="m",
                                           params=1, trainable_params=1)
    rundir.write_state(run, pid=proc.pid, status="running")
    assert rundir.run_info(run).status == "failed"
    proc.wait()
    assert pid_alive(os.getpid())


def test_deepspeed_states_are_vetted_before_deepspeed_unpickles_them(tmp_path):
    """DeepSpeed loads its states with full pickle: a planted function is refused unread,
    its own classes and plain types pass."""
    import collections

    import torch

    ds = tmp_path / "step-4" / "ds" / "state"
    ds.mkdir(parents=True)
    torch.save({"module": collections.OrderedDict(w=torch.zeros(2)), "names": {"a"}, "shape": torch.Size([2])},
               ds / "mp_rank_00_model_states.pt")
    checkpoint.check_no_code(tmp_path / "step-4" / "ds")
    marker = tmp_path / "pwned"
    torch.save({"loss_scaler": _Payload(marker)}, ds / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    with pytest.raises(checkpoint.CheckpointError, match="posix.system, which could run code"):
        checkpoint.check_no_code(tmp_path / "step-4" / "ds")
    assert not marker.exists()
    assert not checkpoint._library_class("deepspeed.no.such.Thing", "deepspeed")
    assert checkpoint._library_class("collections.OrderedDict", "collections")
    assert not checkpoint._library_class("os.system", "os")  # a function, not a class
