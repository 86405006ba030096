"""The run's state in the tmux pane title while `tunewiz attach` follows it: what a user
sees in the status bar from another window."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tunewiz.engine.contract.config import Config, dump_yaml
from tunewiz.tui.services.engine_cli import EngineCli

from support import FAKE_ENGINE

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
TUNEWIZ = str(Path(sys.executable).with_name("tunewiz"))


def pane_title(socket: str) -> str:
    return subprocess.run(["tmux", "-L", socket, "display-message", "-p", "-t", "t:0", "#{pane_title}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_pane_title_shows_the_step_and_the_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ENGINE_STEPS", "3000")
    monkeypatch.setenv("FAKE_ENGINE_DELAY", "0.02")
    engine = EngineCli(prefix=FAKE_ENGINE, output_dir=str(tmp_path / "work_dirs"))
    config = tmp_path / "assistant.yaml"
    config.write_text(dump_yaml(Config(name="assistant", output_dir=engine.output_dir)))
    run = engine.launch(config)
    socket = f"tunewiz-title-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "t", "-x", "80", "-y", "24",
                        "-c", str(tmp_path), f"{TUNEWIZ} attach {run} --output-dir {engine.output_dir}"],
                       check=True)
        deadline, title = time.monotonic() + 30, ""
        while time.monotonic() < deadline:
            title = pane_title(socket)
            if re.fullmatch(r"tunewiz: assistant \d+/3000 loss \d+\.\d\d", title):
                break
            time.sleep(0.2)
        assert re.fullmatch(r"tunewiz: assistant \d+/3000 loss \d+\.\d\d", title), title
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
        engine.stop(run)
