"""Writing a result folder (convert, merge) all at once, and never over someone else's.

The result is written into a hidden temp folder beside OUT and renamed into place, so an
interrupted command leaves OUT as it was. OUT may be replaced only when it is missing,
empty, or an earlier result of the same job (its ``tunewiz.json`` says so); anything else
is refused, because a user who typed the wrong path must not lose a folder.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import ModelError

META_FILE = "tunewiz.json"


def read_meta(folder: Path) -> dict:
    """The tunewiz.json that convert / merge write beside their results ({} when absent)."""
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def check_replaceable(out: Path, same_job: Callable[[dict], bool]) -> None:
    """Raise ModelError unless out is missing, empty, or an earlier result of this job."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ModelError(f"{out} exists and is not a folder", "choose another output folder")
    if not any(out.iterdir()):
        return
    meta = read_meta(out)
    if not (meta and same_job(meta)):
        raise ModelError(f"{out} is not empty and holds something else",
                         "choose a new output folder, or empty this one first")


@contextmanager
def atomic_folder(out: Path, same_job: Callable[[dict], bool], meta: dict) -> Iterator[Path]:
    """Yield a temp folder to fill; on success write meta and swap it in for out."""
    out = Path(out).absolute()
    check_replaceable(out, same_job)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        check_replaceable(out, same_job)  # again: something may have appeared meanwhile
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
