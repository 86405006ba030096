"""Helpers shared by the test tiers: the warm CLI, the fake engine, the tiny model, runs
written by hand or by the real trainer, and the TUI's waiting helpers."""

import sys
from pathlib import Path

# The fake engine as the TUI tests start it: a real process that replays recorded events.
FAKE_ENGINE = [sys.executable, str(Path(__file__).with_name("fake_engine.py"))]
