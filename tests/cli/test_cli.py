"""The CLI surface: help is fast and torch-free, the command map and parser agree."""

import subprocess
import sys

from tunewiz.cli import COMMANDS, build_parser


def test_command_map_and_parser_agree():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


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
    assert r.returncode == 1 and "known presets" in r.stderr


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
