"""One real run driven through tmux, the way a user on SSH works: walk the wizard on the
demo model, launch, quit the app mid-run, attach from a new window, watch it finish,
convert & merge, and get the trained answer in chat. Assertions read capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

TUNEWIZ = str(Path(sys.executable).with_name("tunewiz"))


class Tmux:
    def __init__(self, cwd: Path):
        self.session = f"tunewiz-test-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", self.session, "-x", "100", "-y", "30", "-c", str(self.cwd),
                 "-e", f"PATH={os.environ['PATH']}", "-e", "HF_HUB_OFFLINE=1", command)

    def new_window(self, command: str) -> None:
        self.run("new-window", "-t", self.session, "-c", str(self.cwd), command)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", self.session, key)
            time.sleep(0.3)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", self.session, "-l", text)
        time.sleep(0.3)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.5)
        raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


@pytest.fixture
def tmux(tmp_path):
    subprocess.run([TUNEWIZ, "demo", "--dest", "data", "--name", "Alice", "--quiet"], cwd=tmp_path, check=True)
    t = Tmux(tmp_path)
    yield t
    t.kill()


def test_wizard_train_quit_attach_merge_chat_in_tmux(tmux, tmp_path):
    tmux.start(TUNEWIZ)
    tmux.wait_for("1 Model", timeout=30)          # no runs yet: straight into the wizard
    tmux.keys("Enter")                            # demo model
    tmux.wait_for("demo-assistant")
    tmux.keys("Enter")                            # the CPU-friendly preset
    tmux.wait_for("samples · format conversation")
    tmux.keys("Enter")                            # data/assistant.json
    tmux.wait_for("4 Layout")
    tmux.keys("Enter")
    tmux.wait_for("save & launch")
    tmux.keys("Enter")                            # launch
    tmux.wait_for("step 1/40", timeout=300)
    time.sleep(1)
    tmux.keys("q")                                # leave the monitor: training goes on
    tmux.wait_for("Runs in")
    tmux.keys("C-q")                              # quit the app

    tmux.new_window(f"{TUNEWIZ} attach")
    screen = tmux.wait_for("Training completed", timeout=900)
    assert "step 40/40" in screen
    tmux.keys("m")                                # convert & merge
    tmux.wait_for("Done:", timeout=600)
    tmux.keys("c")                                # chat with the merged model
    tmux.wait_for("ready", timeout=180)
    tmux.type("Please introduce yourself")
    tmux.keys("Enter")
    screen = tmux.wait_for("Alice", timeout=180)
    assert "fine-tuned (merged)" in screen
    run = next((tmp_path / "work_dirs").glob("assistant-*"))
    assert (run / "merged" / "config.json").is_file()
