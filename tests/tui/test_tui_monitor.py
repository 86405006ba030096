"""The run monitor, driven by the fake engine replaying a run at speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewiz.engine.contract.config import Config, dump_yaml
from tunewiz.engine.contract.events import read_events
from tunewiz.tui.app import TunewizApp
from tunewiz.tui.services.engine_cli import EngineCli
from tunewiz.tui.services.run_follower import RunFollower

from support.tui import monitor_drew_the_end, monitor_shows, on_screen, painted, wait_for
from support import FAKE_ENGINE

@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return EngineCli(prefix=FAKE_ENGINE, output_dir=str(tmp_path / "work_dirs"))


def running(view) -> bool:
    return view.summary.status == "running"


def launch(engine: EngineCli, tmp_path: Path, monkeypatch, steps=40, delay=0.02, fail=False) -> Path:
    monkeypatch.setenv("FAKE_ENGINE_STEPS", str(steps))
    monkeypatch.setenv("FAKE_ENGINE_DELAY", str(delay))
    if fail:
        monkeypatch.setenv("FAKE_ENGINE_FAIL", "1")
    config = tmp_path / "assistant.yaml"
    config.write_text(dump_yaml(Config(name="assistant", output_dir=engine.output_dir)))
    return engine.launch(config)


async def test_monitor_follows_a_run_to_completion(engine, tmp_path, monkeypatch):
    run = launch(engine, tmp_path, monkeypatch)
    app = TunewizApp(engine.output_dir, engine=engine, attach=run)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen), timeout=20)
        text = await painted(pilot)
        assert "Training completed" in text and "step 40/40" in text
        assert "loss 0.1" in text  # the last loss of the replayed curve
        # Newest answer first: the trained identity sits above the base model's answer.
        assert text.index("step 40") < text.index("step 30")
        assert "Alice's assistant" in text
        view = app.screen.follower.view
        # The torn line was read once complete; the malformed one was skipped.
        assert view.steps == list(range(1, 41))


async def test_monitor_shows_failure_with_hint(engine, tmp_path, monkeypatch):
    run = launch(engine, tmp_path, monkeypatch, fail=True)
    app = TunewizApp(engine.output_dir, engine=engine, attach=run)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen), timeout=20)
        text = await painted(pilot)
        assert "Failed" in text and "CUDA out of memory" in text
        assert "lower train.batch_size" in text


async def test_stop_is_graceful_and_leaving_keeps_training(engine, tmp_path, monkeypatch):
    run = launch(engine, tmp_path, monkeypatch, steps=400, delay=0.02)
    app = TunewizApp(engine.output_dir, engine=engine, attach=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: monitor_shows(app.screen, running))
        await pilot.press("q")  # leave: back to Home, the run goes on
        await wait_for(pilot, lambda: on_screen(app, "HomeScreen"))
    steps_before = len([e for e in read_events(run / "events.jsonl") if e["type"] == "step"])
    app = TunewizApp(engine.output_dir, engine=engine, attach=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(app.screen.follower.view.steps) > steps_before)
        await pilot.press("s")
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen), timeout=20)
        text = await painted(pilot)
        assert "Stopped" in text and "checkpoint saved" in text
    assert read_events(run / "events.jsonl")[-1]["status"] == "stopped"


async def test_reattach_to_a_finished_run_replays_its_history(engine, tmp_path, monkeypatch):
    run = launch(engine, tmp_path, monkeypatch, delay=0.0)
    follower = RunFollower(run)
    for _ in range(200):
        follower.poll()
        if follower.view.finished:
            break
        await __import__("asyncio").sleep(0.05)
    # Two TUIs on one run: both show the same finished run.
    for _ in range(2):
        app = TunewizApp(engine.output_dir, engine=engine, attach=run)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: monitor_drew_the_end(app.screen))
            text = await painted(pilot)
            assert "Training completed" in text and "step 40/40" in text


async def test_killed_engine_shows_as_failed(engine, tmp_path, monkeypatch):
    import os
    import signal

    from tunewiz.engine.contract.rundir import read_state

    run = launch(engine, tmp_path, monkeypatch, steps=1000, delay=0.02)
    app = TunewizApp(engine.output_dir, engine=engine, attach=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: monitor_shows(app.screen, running))
        os.kill(read_state(run)["pid"], signal.SIGKILL)
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen), timeout=10)
        text = await painted(pilot)
        assert "Failed" in text and "ended without a word" in text


def test_follower_reads_100k_steps_once(tmp_path):
    """A long run's history is read once; after that a poll costs only the new bytes. (How
    fast the first read is belongs in a benchmark, not in a timed test.)"""
    import json

    def step(i):
        return json.dumps({"v": 1, "t": 0, "type": "step", "step": i, "total": 100_000, "epoch": 0.0,
                           "loss": 1.0, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 1e4, "mem_gib": 1.0,
                           "eta_s": 1.0})

    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(step(i) for i in range(1, 100_001)) + "\n")
    follower = RunFollower(tmp_path)
    follower.poll()
    assert len(follower.view.steps) == 100_000
    # Following costs only the new bytes: a second poll with nothing new reads nothing ...
    assert follower.poll() is False
    # ... and one more line adds exactly one step.
    with open(events, "a") as f:
        f.write(step(100_001) + "\n")
    assert follower.poll() is True
    assert len(follower.view.steps) == 100_001 and follower.view.steps[-1] == 100_001


async def test_the_terminal_title_follows_the_run(engine, tmp_path, monkeypatch):
    import re

    run = launch(engine, tmp_path, monkeypatch, steps=40, delay=0.05)
    app = TunewizApp(engine.output_dir, engine=engine, attach=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: re.fullmatch(r"tunewiz: assistant \d+/40 loss \d+\.\d\d", app.title))
        await wait_for(pilot, lambda: monitor_drew_the_end(app.screen), timeout=20)
        assert app.title == "tunewiz: assistant completed 40/40 loss 0.15"
        await pilot.press("q")           # Home is about every run: the title is the app's again
        await wait_for(pilot, lambda: on_screen(app, "HomeScreen"))
        assert app.title == "tunewiz"


async def test_the_eta_is_a_guess_until_a_few_steps_ran_and_lr_has_its_own_strip(tmp_path, monkeypatch):
    import json
    import os
    import socket

    from tunewiz.engine.contract.progress_meter import SURE_AFTER
    from support.recorded_runs import recorded_run, step

    monkeypatch.chdir(tmp_path)
    start = {"t": 1.0, "type": "start", "name": "assistant", "config": {}, "world_size": 1, "total_steps": 400}
    state = {"status": "running", "pid": os.getpid(), "host": socket.gethostname()}
    run = recorded_run(tmp_path / "work_dirs", "assistant", "20260101-000000", [start, step(1, 400, 2.0)], state)
    app = TunewizApp(tmp_path / "work_dirs", engine=EngineCli(prefix=FAKE_ENGINE), attach=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: monitor_shows(app.screen, lambda view: view.steps == [1]))
        text = await painted(pilot)
        assert "step 1/400" in text and "ETA ~13m" in text                  # 399 steps x 2 s, after one step: a guess
        with open(run / "events.jsonl", "a") as f:
            for i in range(2, SURE_AFTER + 3):
                f.write(json.dumps({"v": 1, **step(i, 400, 1.0)}) + "\n")
        await wait_for(pilot, lambda: monitor_shows(app.screen, lambda view: view.steps[-1] == SURE_AFTER + 2))
        text = await painted(pilot)
        assert f"step {SURE_AFTER + 2}/400" in text and f"ETA {(400 - SURE_AFTER - 2) * 2 // 60}m" in text and "ETA ~" not in text
        # A constant learning rate is a flat strip of its own, beside its value; the loss
        # chart plots the loss alone.
        screen = app.screen
        # The charts redraw on their own timer: wait until they have drawn the last step.
        await wait_for(pilot, lambda: screen.chart_version == screen.drawn_version)
        await painted(pilot)
        strip = screen.query_one("#mon-lr")
        assert str(strip.query_one(".strip-value").render()) == "2.00e-04"
        bars = str(strip.query_one(".lr-bars").render())
        assert bars and set(bars) == {"█"}
        assert "lr" not in str(app.screen.query_one("#mon-chart").plt.build())
