"""Listing runs survives any one bad run, and reads only what is new.

`tunewiz runs` and Home read each run on its own: a malformed events field, a state.json
that is not an object, a folder that is not what it seems: that run is "unreadable", with
the reason, and every other run is listed as usual. A property test throws random and
malformed run folders at the listing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from argparse import Namespace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewiz.commands import runs as runs_command
from tunewiz.engine.contract.run_listing import UNREADABLE, Lister
from support import FAKE_ENGINE

T0 = 1_763_800_000.0
CONFIG = "name: x\n"


def make_run(root: Path, name: str, events: list | bytes, state=None) -> Path:
    run = root / f"{name}-20251122-080000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(CONFIG)
    raw = events if isinstance(events, bytes) else "".join(json.dumps(e) + "\n" for e in events).encode()
    (run / "events.jsonl").write_bytes(raw)
    if state is not None:
        (run / "state.json").write_text(state if isinstance(state, str) else json.dumps(state))
    return run


def good_events(steps: int = 3, total: int = 3, done: bool = True) -> list[dict]:
    evs = [{"v": 1, "t": T0, "type": "start", "total_steps": total}]
    evs += [{"v": 1, "t": T0 + i, "type": "step", "step": i, "total": total, "loss": 1.0 / i, "eta_s": 1.0}
            for i in range(1, steps + 1)]
    if done:
        evs.append({"v": 1, "t": T0 + 9, "type": "done", "status": "completed", "path": None})
    return evs


def bad_runs(root: Path) -> dict[str, Path]:
    return {
        "good": make_run(root, "good", good_events(), {"status": "completed"}),
        "loss": make_run(root, "loss", good_events()[:2] + [{"v": 1, "t": T0, "type": "step", "step": 2,
                                                            "total": 3, "loss": "abc"}]),
        "step": make_run(root, "step", [{"v": 1, "t": T0, "type": "step", "step": {"n": 1}, "total": 3}]),
        "started": make_run(root, "started", [{"v": 1, "t": 1e300, "type": "start", "total_steps": 3}],
                            {"status": "completed"}),
        "done": make_run(root, "done", good_events()[:1] + [{"v": 1, "t": T0, "type": "done", "status": 7}]),
        "statelist": make_run(root, "statelist", good_events(done=False), [1, 2]),
        "statepid": make_run(root, "statepid", good_events(done=False), {"pid": "12", "status": "running"}),
        "statejson": make_run(root, "statejson", good_events(done=False), "{not json"),
        "bytes": make_run(root, "bytes", b"\xff\xfe\x00garbage\n{\"type\": \"step\", \"step\": 1e999}\n"),
    }


def test_runs_lists_every_run_when_some_are_bad(tmp_path, capsys):
    root = tmp_path / "work_dirs"
    runs = bad_runs(root)
    (runs["bytes"] / "events.jsonl").unlink()
    (runs["bytes"] / "events.jsonl").mkdir()  # a folder where a file should be
    assert runs_command.run(Namespace(output_dir=str(root))) == 0
    out = capsys.readouterr().out
    for name, run in runs.items():
        assert run.name in out, name
    table = {ln.split()[0]: ln.split()[1] for ln in out.splitlines()[1:len(runs) + 1]}
    assert table[runs["good"].name] == "completed"
    assert table[runs["started"].name] == "completed"  # a time no clock can show is only "-"
    for name in ("loss", "step", "done", "statelist", "statepid", "statejson", "bytes"):
        assert table[runs[name].name] == UNREADABLE, (name, out)
    assert f"{runs['loss'].name}: unreadable: events.jsonl: a step event has loss 'abc', not a number" in out
    assert f"{runs['statelist'].name}: unreadable: state.json is not a JSON object" in out


def test_runs_cli_with_a_bad_run_is_exit_0(cli, tmp_path):
    root = tmp_path / "work_dirs"
    runs = bad_runs(root)
    res = cli("runs", "--output-dir", str(root), env={"TUNEWIZ_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert all(r.name in res.stdout for r in runs.values())


def test_listing_reads_only_new_events(tmp_path):
    root = tmp_path / "work_dirs"
    run = make_run(root, "long", good_events(steps=50, total=100, done=False), {"status": "running"})
    events = run / "events.jsonl"
    cache = tmp_path / "cache"
    first = Lister(cache).read(run)
    assert (first.step, first.loss) == (50, 1.0 / 50)

    # Scribble over the old lines (same size, same end): a reader that re-read them would see
    # a different first step; one that resumes from its cached offset does not notice.
    raw = bytearray(events.read_bytes())
    raw[: raw.index(b"\n")] = b" " * raw.index(b"\n")
    events.write_bytes(bytes(raw))
    with open(events, "a") as f:
        f.write(json.dumps({"v": 1, "t": T0, "type": "step", "step": 51, "total": 100, "loss": 0.5}) + "\n")
    for lister in (Lister(cache), Lister(cache)):  # another process (a later `tunewiz runs`)
        again = lister.read(run)
        assert (again.step, again.total, again.loss) == (51, 100, 0.5)
    assert len(list(cache.iterdir())) == 1

    # A file replaced by another (a different inode, or shorter) is read from the start.
    events.unlink()
    events.write_text("".join(json.dumps(e) + "\n" for e in good_events(steps=2, total=2)))
    fresh = Lister(cache).read(run)
    assert (fresh.status, fresh.step, fresh.total) == ("completed", 2, 2)


def test_a_damaged_cache_is_ignored(tmp_path):
    root = tmp_path / "work_dirs"
    run = make_run(root, "r", good_events(), {"status": "completed"})
    cache = tmp_path / "cache"
    Lister(cache).read(run)
    for f in cache.iterdir():
        f.write_text(json.dumps({"v": 1, "key": "x", "dev": "a", "offset": [], "fold": 3}))
    assert Lister(cache).read(run).status == "completed"
    for f in cache.iterdir():
        data = json.loads(json.dumps({"v": 1}))
        f.write_text(json.dumps(data) + "garbage")
    assert Lister(cache).read(run).status == "completed"


async def test_home_lists_the_other_runs_beside_a_bad_one(tmp_path, monkeypatch):

    from tunewiz.tui.app import TunewizApp
    from tunewiz.tui.services.engine_cli import EngineCli

    from support.tui import painted, runs_listed, wait_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNEWIZ_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "work_dirs"
    runs = bad_runs(root)
    os.utime(runs["good"], (T0 + 100, T0 + 100))  # the newest: the first row
    fake = FAKE_ENGINE
    app = TunewizApp(root, engine=EngineCli(prefix=fake, output_dir=str(root)), cursor_blink=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: runs_listed(app.screen, *(r.name for r in runs.values())))
        text = await painted(pilot)
        assert "completed" in text and "unreadable" in text
        assert all(r.name in text for r in runs.values())
        while app.screen.selected_run() != runs["loss"]:
            await pilot.press("down")
        await pilot.press("enter")  # no monitor on a run that cannot be read: the reason instead
        await wait_for(pilot, lambda: "cannot be read" in app.screen.refused)
        text = await painted(pilot)
        assert "cannot be read" in text and "loss 'abc'" in text and type(app.screen).__name__ == "HomeScreen"


# --------------------------------------------------------------------------- property test

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
FIELD_VALUES = st.one_of(JSON, st.just(float("nan")), st.just(float("inf")), st.just(1e300), st.just(-5))
EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "step", "done", "eval", "error", "log", "progress", "odd"])},
    optional={k: FIELD_VALUES for k in ("t", "step", "total", "total_steps", "loss", "eta_s", "status",
                                       "samples", "msg")})
LINE = st.one_of(EVENT.map(lambda e: json.dumps(e).encode()), JSON.map(lambda v: json.dumps(v).encode()),
                 st.binary(max_size=20))
STATE = st.one_of(st.none(), JSON.map(json.dumps), st.binary(max_size=10),
                  st.fixed_dictionaries({}, optional={"pid": FIELD_VALUES, "host": FIELD_VALUES,
                                                      "status": FIELD_VALUES}).map(json.dumps))
RUN = st.tuples(st.lists(LINE, max_size=6), st.booleans(), STATE,
                st.sampled_from(["file", "missing", "folder", "link"]))


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(RUN, min_size=1, max_size=4), st.lists(LINE, max_size=3))
def test_listing_never_crashes_on_random_runs(runs, appended):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "work_dirs"
        root.mkdir()
        (root / "not-a-run").mkdir()
        (root / "stray-20250101-000000").write_text("a file, not a folder")
        made = []
        for i, (lines, torn, state, kind) in enumerate(runs):
            run = root / f"r{i}-20250101-0000{i:02d}"
            run.mkdir()
            (run / "config.yaml").write_text(CONFIG)
            events = run / "events.jsonl"
            body = b"\n".join(lines) + (b"" if torn else b"\n")
            if kind == "file":
                events.write_bytes(body)
            elif kind == "folder":
                events.mkdir()
            elif kind == "link":
                events.symlink_to(run / "nowhere")
            if isinstance(state, bytes):
                (run / "state.json").write_bytes(state)
            elif state is not None:
                (run / "state.json").write_text(state)
            made.append(run)
        lister = Lister(Path(tmp) / "cache")
        for attempt in range(2):  # the second pass resumes from the cache
            listed = lister.list(root)
            assert sorted(r.path.name for r in listed) == sorted(r.name for r in made)
            for r in listed:
                assert r.status in ("starting", "running", "completed", "stopped", "failed", UNREADABLE)
                assert isinstance(r.step, int) and isinstance(r.total, int)
                assert r.loss is None or isinstance(r.loss, float)
                assert (r.status == UNREADABLE) == bool(r.problem)
            for run in made:
                if (run / "events.jsonl").is_file():
                    with open(run / "events.jsonl", "ab") as f:
                        f.write(b"\n".join(appended) + b"\n")
        # The command prints one row per run and never fails.
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert runs_command.run(Namespace(output_dir=str(root))) == 0
        assert all(run.name in out.getvalue() for run in made)
        shutil.rmtree(root)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    # `tunewiz runs`'s default lister caches under $TUNEWIZ_CACHE: keep it inside the test.
    monkeypatch.setenv("TUNEWIZ_CACHE", str(tmp_path / "cache"))
    import tunewiz.engine.contract.run_listing as rl

    monkeypatch.setattr(rl, "_default", None)


def test_old_cache_entries_are_pruned(tmp_path):
    root = tmp_path / "work_dirs"
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / ("0" * 40 + ".json")
    stale.write_text("{}")
    os.utime(stale, (T0 - 90 * 86400, T0 - 90 * 86400))
    Lister(cache).read(make_run(root, "r", good_events(), {"status": "completed"}))
    assert not stale.exists() and len(list(cache.glob("*.json"))) == 1


async def test_the_monitor_skips_malformed_events(tmp_path, monkeypatch):

    from tunewiz.tui.app import TunewizApp
    from tunewiz.tui.services.engine_cli import EngineCli

    from support.tui import monitor_drew_the_end, screen_text, wait_for

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "work_dirs"
    evs = good_events(steps=2, total=4, done=False) + [
        {"v": 1, "t": T0, "type": "step", "step": "three", "total": 4, "loss": "abc"},
        {"v": 1, "t": T0, "type": "progress", "phase": "load", "done": [1], "total": 3},
        {"v": 1, "t": T0, "type": "eval", "step": 2, "samples": "not a list"},
        {"v": 1, "t": T0, "type": "error", "kind": "data", "msg": "broken", "hint": {"x": 1}},
        {"v": 1, "t": T0, "type": "step", "step": 3, "total": 4, "loss": 0.25, "epoch": 1.0},
        {"v": 1, "t": T0, "type": "done", "status": "stopped", "path": None}]
    run = make_run(root, "odd", evs, [1, 2])
    fake = FAKE_ENGINE
    app = TunewizApp(root, engine=EngineCli(prefix=fake, output_dir=str(root)), cursor_blink=False, attach=run)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: monitor_drew_the_end(pilot.app.screen))
        text = screen_text(pilot.app)
        assert "Stopped" in text and "step 3/4" in text
        # the whole log, not only the lines the panel has room for
        log = [strip.text for strip in pilot.app.screen.query_one("#mon-log").lines]
        assert "skipped a malformed step event (step is not a number)" in log
