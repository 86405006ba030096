"""The real `tunewiz` CLI as a test calls it, and the thread count a demo-model run may use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support import warm_cli


def demo_threads() -> int:
    """Threads for a process on the demo model: the cores this test worker may use (up to
    2), so parallel workers (`pytest -n`) never oversubscribe the machine."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600,
            input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real `tunewiz` CLI in its own process, the way a user does (forked from a
    warm server that has already imported torch; see warm_cli.py)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return warm_cli.run(args, cwd=cwd, env=full_env, timeout=timeout, input=input)
