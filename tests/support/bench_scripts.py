"""Running a bench/ script as a user does, on the CPU tier: its own process, no model hub, and
no GPU (also on a GPU machine, whose CPU tier these tests belong to)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args: str, cwd: Path, timeout: int = 600, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
