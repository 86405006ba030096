"""A full disk for real: the run's output folder on a small tmpfs. A checkpoint that does
not fit is a one-line `disk` error naming the folder, leaves nothing half-written or
listed, and `--resume` on a still-full disk exits 1 with one line; with space freed the
run resumes and completes. Skipped (with the reason) where a tmpfs cannot be mounted."""

from __future__ import annotations

import os
import subprocess

import pytest

from support.runs import one_line_error, write_config, write_data
from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import parse_line, read_events


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(mnt, leave: int, name: str) -> None:
    """Take all the free space of the disk but `leave` bytes (all of it: leave=0)."""
    with open(mnt / name, "ab") as f:
        while _free(mnt) > leave:
            try:
                f.write(b"\0" * min(1 << 16, _free(mnt) - leave))
                f.flush()
            except OSError:
                break


@pytest.mark.slow
def test_a_checkpoint_on_a_full_disk_is_a_user_error(tiny_model, tmp_path, small_disk, cli):
    # A big adapter (r=64: a checkpoint of ~1.5 MB) against 512 KB left: the run's own
    # small files fit, its checkpoint does not.
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), output_dir=str(small_disk / "runs"),
                       train__max_steps=4, train__save_every=2, lora={"r": 64, "alpha": 64, "dropout": 0.0},
                       eval={"inputs": [], "every": 0})
    (small_disk / "runs").mkdir()
    _fill(small_disk, 512 << 10, "filler")
    r = cli("train", str(cfg))
    line = one_line_error(r, alone=False)
    run = rundir.list_runs(small_disk / "runs")[0]
    assert "no space left" in line and str(run / "checkpoints") in line and "free space" in line
    evs = read_events(run / "events.jsonl")
    errors = [e for e in evs if e["type"] == "error"]
    assert errors and errors[-1]["kind"] == "disk" and evs[-1]["type"] == "done" and evs[-1]["status"] == "failed"
    assert rundir.checkpoints(run) == [] and list((run / "checkpoints").iterdir()) == []
    assert all(parse_line(ln) for ln in (run / "events.jsonl").read_bytes().splitlines())

    # Still full (to the last byte): the resume says so in one line and exits 1.
    _fill(small_disk, 0, "filler2")
    r = cli("train", str(run), "--resume")
    line = one_line_error(r, alone=False)
    assert "no space left" in line and str(run) in line and "lost sys.stderr" not in r.stderr

    # Space freed: the same run resumes and completes, every event line readable.
    for name in ("filler", "filler2"):
        (small_disk / name).unlink()
    r = cli("train", str(run), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [c.name for c in rundir.checkpoints(run)] == ["step-2", "step-4"]
    assert read_events(run / "events.jsonl")[-1]["status"] == "completed"
    lines = (run / "events.jsonl").read_bytes().splitlines()
    assert all(parse_line(ln) for ln in lines if ln.strip()), [ln for ln in lines if not parse_line(ln)][:3]
