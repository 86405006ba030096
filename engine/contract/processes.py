"""Whether a process is alive, the one way every part of tunewiz asks. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """Whether the process exists and has not ended: a zombie (killed or exited, but not yet
    reaped by a parent that never waits) is dead, whatever kill(pid, 0) says."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, ValueError, TypeError):  # a nonsense pid in a hand-edited state.json
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS) or it just went: trust kill(pid, 0)
        return False
    # "pid (comm) S ..." - comm may hold spaces or parentheses, so read after the last ")".
    state = stat[stat.rfind(")") + 2:][:1]
    return state in ("Z", "X")
