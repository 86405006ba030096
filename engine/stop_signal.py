"""Graceful stop requests: SIGTERM (`tunewiz stop`) or a first Ctrl-C asks the run to
checkpoint and end "stopped"; a second Ctrl-C aborts. Torch-free.

Installed first thing in the process that trains (and in the supervisor of a torchrun
launch), before anything slow: a request that arrives while the libraries still import
is kept, not fatal. ``spawn_detached`` starts the supervisor with SIGTERM blocked, so even
a `tunewiz stop` in the first milliseconds waits, pending, until ``install`` unblocks it.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable

_state = {"requested": False, "installed": False, "announce": True}
_listeners: list[Callable[[], None]] = []


def requested() -> bool:
    return _state["requested"]


def on_stop(callback: Callable[[], None]) -> None:
    """Call back on the request (at once when one has already come)."""
    _listeners.append(callback)
    if _state["requested"]:
        callback()


def install(announce: bool = True) -> None:
    """Handle SIGTERM / SIGINT, ignore SIGHUP (an SSH drop must not stop a foreground run:
    its log is on disk), then let a SIGTERM that waited blocked come in."""
    _state["announce"] = announce
    if not _state["installed"]:
        signal.signal(signal.SIGTERM, _graceful)
        signal.signal(signal.SIGINT, _graceful)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _state["installed"] = True
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _graceful(signum, frame) -> None:
    if _state["requested"] and signum == signal.SIGINT:
        raise KeyboardInterrupt
    first = not _state["requested"]
    _state["requested"] = True
    if first and _state["announce"]:
        try:
            print("stop requested: checkpointing after this step", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # stderr on a full disk or closed: the stop still counts
            pass
    for callback in list(_listeners):
        callback()
