"""Fault injection: training SIGKILLs itself at 24 points across startup, steps, checkpoint
writes, rotation and event writes (engine/contract/faults.py, TUNEWIZ_FAULT), each time resumed
with `--resume`. After every kill no incomplete checkpoint is listed; the chain of resumes
ends with the uninterrupted run's losses and weights."""

from __future__ import annotations

import pytest

from support.runs import losses, only_run, write_config, write_data
from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import parse_line, read_events

OVER = dict(train__max_steps=12, train__save_every=2, train__save_total_limit=2,
            lora={"r": 8, "alpha": 16, "dropout": 0.1}, eval={"inputs": [], "every": 0})
WHOLE = {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng-rank0.pt",
         "trainer_state.json"}
# In order: each point is reached by the resume that follows the kill before it (grad_accum
# is 2, so a step has two backward passes; checkpoints every 2 steps, the newest 2 kept).
KILLS = [
    "load.start", "load.data", "load.model", "event.start",               # startup, no checkpoint yet
    "step.backward:1", "step.optimizer:1", "event.step:1",                # inside the first steps
    "ckpt.tmp", "ckpt.weights", "ckpt.optimizer", "ckpt.rng", "ckpt.marker",  # writing step-2
    "ckpt.renamed",                                                       # step-2 just in place
    "load.model",                                                         # resumed from step-2
    "event.checkpoint",                                                   # step-4 written
    "events.torn:5",                                                      # half an event line
    "rotate.renamed",                                                     # step-6 in, step-2 unlisted
    "rotate.deleting",                                                    # step-4 half deleted
    "step.backward:3",                                                    # inside step 10
    "ckpt.marker",                                                        # step-10 all but renamed
    "ckpt.renamed",                                                       # step-10 before rotation
    "event.step:2",                                                       # after step 12
    "ckpt.rng",                                                           # the final checkpoint
    "done.before",                                                        # all saved, no done event
]


def _assert_whole(run):
    for ck in rundir.checkpoints(run):
        names = {p.name for p in ck.iterdir()}
        assert WHOLE <= names, f"{ck.name} listed without {WHOLE - names}"
        assert rundir.checkpoint_step(ck) == int(ck.name.split("-")[1])


@pytest.mark.slow
def test_kill_anywhere_then_resume_matches_the_uninterrupted_run(tiny_model, tmp_path, cli):
    from safetensors.torch import load_file

    data = write_data(tmp_path / "d.jsonl", n=24)
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    assert cli("train", str(write_config(ref_dir, tiny_model, data, **OVER))).returncode == 0
    ref_run = only_run(ref_dir)
    ref = losses(ref_run)
    assert max(ref) == 12

    work = tmp_path / "chain"
    work.mkdir()
    cfg = write_config(work, tiny_model, data, **OVER)
    for k, point in enumerate(KILLS):
        target = str(only_run(work)) if k else str(cfg)
        args = ("train", target, "--resume") if k else ("train", target)
        r = cli(*args, env={"TUNEWIZ_FAULT": point})
        assert r.returncode == -9, f"kill {k} at {point} was not reached (rc {r.returncode}): {r.stderr[-2000:]}"
        _assert_whole(only_run(work))
    run = only_run(work)
    r = cli("train", str(run), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]

    got = losses(run)
    assert sorted(got) == list(range(1, 13))
    for step, loss in ref.items():
        assert got[step] == pytest.approx(loss, rel=1e-4, abs=1e-5), step
    final = rundir.checkpoints(run)[-1]
    assert final.name == "step-12" and [c.name for c in rundir.checkpoints(run)] == ["step-10", "step-12"]
    want = load_file(rundir.checkpoints(ref_run)[-1] / "adapter_model.safetensors")
    have = load_file(final / "adapter_model.safetensors")
    assert want.keys() == have.keys()
    for name in want:
        assert (want[name] - have[name]).abs().max().item() <= 1e-6, name
    # Nothing half-made is left, and one torn event line at most (the kill that tore it).
    assert not [p.name for p in (run / "checkpoints").iterdir() if rundir.is_stale(p.name)]
    lines = (run / "events.jsonl").read_bytes().splitlines()
    assert sum(parse_line(ln) is None for ln in lines) <= 1
    assert read_events(run / "events.jsonl")[-1]["status"] == "completed"
