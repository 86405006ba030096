"""Errors a user can cause.

Each one carries a one-line message and a hint. The CLI turns them into exit code 1
and an ``error`` event; nothing below the edge prints a traceback for them. ``kind``
matches the ``error`` event's ``kind`` field (see events.py).
"""

from __future__ import annotations


class TunewizError(Exception):
    """Base class: a problem the user can fix."""

    kind = "internal"

    def __init__(self, msg: str, hint: str = ""):
        super().__init__(msg)
        self.msg = msg
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.msg} ({self.hint})" if self.hint else self.msg


class ConfigError(TunewizError):
    kind = "config"


class DataError(TunewizError):
    """Bad data. ``where`` is ``file:line`` when the problem has a place."""

    kind = "data"

    def __init__(self, msg: str, hint: str = "", where: str = ""):
        super().__init__(f"{where}: {msg}" if where else msg, hint)
        self.where = where


class ModelError(TunewizError):
    kind = "model"


class OOMError(TunewizError):
    kind = "oom"


class DistributedError(TunewizError):
    kind = "distributed"
