"""The README's commands work as written after `make run`: bin/tunewiz needs no activation."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bin_tunewiz_runs_the_cli_from_any_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"  # no venv on PATH, as in a fresh shell
    link = tmp_path / "tunewiz"
    link.symlink_to(REPO / "bin" / "tunewiz")  # e.g. linked into ~/.local/bin
    for launcher in (REPO / "bin" / "tunewiz", link):
        r = subprocess.run([str(launcher), "runs", "--output-dir", str(tmp_path / "none")], cwd=tmp_path,
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "no runs under" in r.stdout


def test_the_readme_says_how_to_reach_tunewiz_after_make_run():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "bin/tunewiz attach" in readme and "source .venv/bin/activate" in readme
