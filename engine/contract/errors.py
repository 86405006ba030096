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


class DiskFullError(TunewizError):
    """The disk (or quota) holding a run's files is full: the user frees space and resumes."""

    kind = "disk"


def is_disk_full(e: BaseException | None) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception's chain. Libraries that write from C++
    (torch.save, safetensors) raise their own errors and keep only the message."""
    import errno

    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def disk_full(path, resume: str = "") -> DiskFullError:
    """The one message for a full disk: which path, and how to get going again."""
    import os

    where = os.fspath(path)
    hint = f"free space on the disk holding {where} (`df -h {os.path.dirname(where) or '.'}`)"
    return DiskFullError(f"no space left on the device while writing {where}",
                         hint + (f", then {resume}" if resume else ""))
