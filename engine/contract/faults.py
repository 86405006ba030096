"""Fault injection, for the crash tests only: ``TUNEWIZ_FAULT=POINT[:N]`` makes the process
SIGKILL itself the N-th time (default 1) it reaches ``POINT``. Unset, it costs one dict
lookup per call. The points are named where they sit: ``load.*`` (startup),
``step.*`` (inside an optimizer step), ``ckpt.*`` (writing a checkpoint), ``rotate.*``
(deleting old ones), ``event.TYPE`` (just after an event of that type is written),
``events.torn`` (half an event line on disk) and ``done.before``.
"""

from __future__ import annotations

import os
import signal

ENV = "TUNEWIZ_FAULT"
_hits: dict[str, int] = {}


def hit(point: str) -> bool:
    """True when this is the armed point's N-th visit (the caller then dies with die())."""
    spec = os.environ.get(ENV)
    if not spec:
        return False
    name, _, nth = spec.partition(":")
    if name != point:
        return False
    _hits[point] = _hits.get(point, 0) + 1
    return _hits[point] == int(nth or 1)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def point(name: str) -> None:
    """Die here if this point is armed (kill -9: nothing is flushed, no handler runs)."""
    if hit(name):
        die()
