"""The CLI surface: help is fast and torch-free, the command map and parser agree."""

import subprocess
import sys

import importlib
from pathlib import Path

from tunewiz.cli import build_parser
from tunewiz.commands import SUBCOMMANDS


def test_every_command_module_is_on_the_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == list(SUBCOMMANDS)
    folder = Path(importlib.import_module("tunewiz.commands").__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "wizard"}
    assert modules == set(SUBCOMMANDS.values())  # no command module left out of the map
    for module in SUBCOMMANDS.values():
        m = importlib.import_module(f"tunewiz.commands.{module}")
        assert callable(m.add_parser) and callable(m.run)


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`tunewiz presets list | head -1`: the reader is gone before the command writes (its
    read end is closed before the command starts, so every write fails): no traceback."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "tunewiz", "presets", "list"], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert r.returncode == 141, r.stderr
    assert r.stderr == "", r.stderr


def test_help_imports_no_torch():
    code = ("import sys; from tunewiz.cli import main\n"
            "try:\n main(['--help'])\nexcept SystemExit: pass\n"
            "bad=[m for m in ('torch','transformers','peft') if m in sys.modules]\n"
            "print('BAD', bad, file=sys.stderr) if bad else None; sys.exit(1 if bad else 0)")
    # Fast because nothing heavy loads; how fast is bench/bench_startup.py's to measure.
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "open the wizard" in r.stdout or "wizard" in r.stdout


def test_usage_error_exits_2(cli):
    r = cli("train")
    assert r.returncode == 2 and "usage" in r.stderr


def test_presets_copy_never_overwrites(cli, tmp_path):
    r = cli("presets", "copy", "sft-lora", str(tmp_path / "a.yaml"))
    assert r.returncode == 0, r.stderr
    r = cli("presets", "copy", "sft-lora", str(tmp_path / "a.yaml"))
    assert r.returncode == 1 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = cli("presets", "copy", "nope", str(tmp_path / "b.yaml"))
    assert r.returncode == 1 and "no preset named 'nope'" in r.stderr and "tunewiz presets list" in r.stderr
    assert not (tmp_path / "b.yaml").exists()
    r = cli("presets", "copy", "sft-lorra", str(tmp_path / "b.yaml"))    # a typo gets the close names
    assert r.returncode == 1 and "did you mean sft-lora" in r.stderr


def test_run_commands_without_a_run_say_where_they_looked(cli, tmp_path):
    """stop and stacks act on an existing run: none there is one line and exit 1; a run
    that is not running has no process to show."""
    for command in ("stop", "stacks"):
        r = cli(command, "--output-dir", str(tmp_path / "runs"))
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [
            f"tunewiz: error: no run under {tmp_path / 'runs'} (list runs with `tunewiz runs`)"], r.stderr
    run = tmp_path / "runs" / "t-20261122-101010"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: t\n")
    r = cli("stacks", "t", "--output-dir", str(tmp_path / "runs"))
    assert r.returncode == 1 and "has no process on this machine" in r.stderr, r.stderr
