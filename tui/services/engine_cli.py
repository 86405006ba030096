"""The engine's command line, as the TUI calls it: always a subprocess, never in-process.

``EngineCli.prefix`` is the argv that stands for ``tunewiz`` (``python -m tunewiz`` by
default); tests point it at a fake engine that speaks the same contract.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator


class EngineCommandFailed(Exception):
    """A CLI command exited non-zero; ``message`` is its last stderr line (the one-line error)."""

    def __init__(self, argv: list[str], message: str):
        super().__init__(message)
        self.argv = argv
        self.message = message


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@dataclass
class EngineCli:
    prefix: list[str] = field(default_factory=lambda: [sys.executable, "-m", "tunewiz"])
    output_dir: str = "work_dirs"

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, *args]

    def _env(self) -> dict:
        return {**os.environ, "TUNEWIZ_OUTPUT_DIR": self.output_dir, "PYTHONUNBUFFERED": "1"}

    def launch(self, config_path: str | Path, timeout: float = 120) -> Path:
        """`tunewiz train CONFIG --detach`: returns the new run directory (its last stdout line)."""
        argv = self.argv("train", str(config_path), "--detach")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self._env(),
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise EngineCommandFailed(argv, _last_line(out.stderr) or f"exit code {out.returncode}")
        run = _last_line(out.stdout)
        if not run:
            raise EngineCommandFailed(argv, "train --detach printed no run directory")
        return Path(run)

    def stop(self, run: str | Path, timeout: float = 60) -> None:
        """`tunewiz stop RUN`: asks for a checkpoint and a clean exit; returns at once."""
        argv = self.argv("stop", str(run))
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self._env(),
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise EngineCommandFailed(argv, _last_line(out.stderr) or f"exit code {out.returncode}")

    async def stream(self, *args: str) -> AsyncIterator[str]:
        """Run a command, yielding its output lines; raises EngineCommandFailed on a bad exit."""
        argv = self.argv(*args)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, env=self._env())
        last = ""
        ended = False
        assert proc.stdout is not None
        try:
            # Progress bars redraw with \r; split on both so each update becomes a line.
            buffer = b""
            while chunk := await proc.stdout.read(4096):
                buffer += chunk
                *lines, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
                for raw in lines:
                    if line := raw.decode(errors="replace").rstrip():
                        last = line
                        yield line
            if tail := buffer.decode(errors="replace").strip():
                last = tail
                yield tail
            ended = True
        finally:
            # Kill only a command whose reader gave up (cancelled, or the caller stopped
            # iterating). After EOF the process is exiting: killing it then would poll() and
            # reap it behind asyncio's back (which then reports 255) or cut its teardown.
            if not ended and proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
            code = await proc.wait()
        if code != 0:
            raise EngineCommandFailed(argv, last or f"exit code {code}")
