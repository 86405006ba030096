"""The TUI's engine runner: a command's exit status is what it really returned.

The runner used to kill a command whenever its output ended before asyncio had seen the
exit. Killing goes through Popen.poll(), which can reap the exited child first; asyncio's
watcher then finds no child and reports 255, so a successful convert or check-data showed
as failed now and then. Output ending is no reason to kill: the runner waits for the exit.
"""

from __future__ import annotations

import sys

import pytest

from tunewiz.tui.services.engine_cli import EngineCli, EngineCommandFailed

# Prints its last line, closes its output, then takes a moment to exit: the widest form of
# the window between end of output and exit (killing it there turns a success into -9).
SLOW_EXIT = "import os, sys, time; print('done'); sys.stdout.flush(); os.close(1); os.close(2); time.sleep(0.5); sys.exit({code})"


async def collect(code: int) -> list[str]:
    engine = EngineCli(prefix=[sys.executable, "-c", SLOW_EXIT.format(code=code)])
    return [line async for line in engine.stream()]


async def test_a_command_that_exits_slowly_after_its_output_succeeds():
    assert await collect(0) == ["done"]


async def test_a_failing_command_raises_with_its_last_line():
    with pytest.raises(EngineCommandFailed) as failed:
        await collect(1)
    assert failed.value.message == "done"
