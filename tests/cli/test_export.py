"""`tunewiz export RUN`: the CLI twin of the TUI's Convert & merge, one plan for both."""

import json

from support.adapter_fixtures import add_lora_checkpoint, make_run
from support.runs import one_line_error


def _finished(run, status="completed"):
    events = [{"v": 1, "t": 1.0, "type": "start", "name": "t", "config": {}, "world_size": 1, "total_steps": 2,
               "model": "m", "params": 1, "trainable_params": 1},
              {"v": 1, "t": 2.0, "type": "done", "status": status, "path": None}]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "state.json").write_text(json.dumps({"status": status}))
    return run


def test_export_converts_then_merges_into_the_run(cli, tiny_model, tmp_path):
    from tunewiz.engine.contract.rundir import output_plan
    from tunewiz.tui.screens.convert_merge import plan

    run = _finished(make_run(tmp_path / "work_dirs", tiny_model))
    add_lora_checkpoint(run, tiny_model, step=2)
    assert plan(run) == output_plan(run)  # the TUI runs the same steps
    printed = cli("export", str(run), "--print")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [f"tunewiz convert {run} {run / 'adapter'}",
                                           f"tunewiz merge {tiny_model} {run / 'adapter'} {run / 'merged'}"]
    r = cli("export", str(run))
    assert r.returncode == 0, r.stderr
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert (run / "merged" / "config.json").is_file()
    assert f"tunewiz chat {run / 'merged'}" in r.stdout
    again = cli("export", str(run))  # its own earlier output is replaced, nothing else
    assert again.returncode == 0, again.stderr


def test_export_refuses_a_run_still_training(cli, tiny_model, tmp_path):
    import os

    run = make_run(tmp_path / "work_dirs", tiny_model)
    (run / "events.jsonl").write_text(json.dumps({"v": 1, "t": 1.0, "type": "start", "name": "t", "config": {},
                                                  "world_size": 1, "total_steps": 9, "model": "m", "params": 1,
                                                  "trainable_params": 1}) + "\n")
    (run / "state.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))  # alive: this test
    one_line_error(cli("export", str(run)), "is running, not finished", "tunewiz convert")
    assert not (run / "adapter").exists()
