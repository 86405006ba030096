"""Writing results (convert, merge, demo data, presets) without ever replacing what is not ours.

One rule for every command that writes where the user points it: a target may be replaced
only when it is missing, empty, or provably this command's own earlier result. For folders
(convert, merge) the proof is ``tunewiz.json``: it names the command that wrote the folder
(``written_by``) and the job's identity (which run, which base and adapter). Copying an
adapter's tunewiz.json into a merged model must therefore not make that model look like a
convert result, so ``written_by`` is always set by the writer itself. For single files (demo
data, a preset copy) the proof is the content: a file is left alone unless it is absent or
already byte-identical to what would be written.

Folders are written into a hidden temp folder beside OUT and renamed into place, so an
interrupted or disk-full command leaves OUT as it was and never a folder that looks
complete. A full disk is a user error: one line naming the folder and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import ConfigError, DiskFullError, ModelError, is_disk_full
from .errors import disk_full as _disk_full

META_FILE = "tunewiz.json"
WRITTEN_BY = "written_by"
# What each writer is called in messages about a folder it left.
WRITERS = {"convert": "a converted checkpoint (tunewiz convert)", "merge": "a merged model (tunewiz merge)"}
_TMP, _OLD = ".tmp-", ".old-"


def read_meta(folder: Path) -> dict:
    """The tunewiz.json that convert / merge write beside their results ({} when absent)."""
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def disk_full(path: Path) -> DiskFullError:
    """The project's one disk-full error (errors.disk_full), with the fix for a result folder:
    nothing was written there, so the same command can simply run again."""
    return _disk_full(path, "run the same command again, or give an output on another disk")


def writer_of(meta: dict) -> str:
    """The command that wrote a folder, from its tunewiz.json ("" when none did)."""
    if not meta:
        return ""
    writer = meta.get(WRITTEN_BY)
    if writer is None:
        # Written before written_by existed: a merge result is told by its merged_* keys, so a
        # merged model (which carries its adapter's run and method too) is never a convert's.
        writer = "merge" if "merged_base" in meta or "merged_adapter" in meta else "convert"
    return str(writer)


def owned(meta: dict, job: str, identity: dict) -> bool:
    """True when meta says this folder is job's own earlier result for the same identity."""
    return writer_of(meta) == job and all(meta.get(k) == v for k, v in identity.items())


def check_replaceable(out: Path, job: str, identity: dict) -> None:
    """Raise ModelError unless out is missing, empty, or job's earlier result for identity."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise ModelError(f"{out} exists and is not a folder", "choose another output folder")
    if not any(out.iterdir()):
        return
    meta = read_meta(out)
    if owned(meta, job, identity):
        return
    writer = WRITERS.get(writer_of(meta))
    if writer and writer_of(meta) != job:
        what = f"holds {writer}"
    elif writer:
        what = "holds the result of another " + ("run" if job == "convert" else "base or adapter")
    else:
        what = "is not empty and holds something else"
    raise ModelError(f"{out} {what}; tunewiz {job} never replaces it",
                     "choose a new output folder, or remove this one yourself first")


def clean_stale(out: Path) -> None:
    """Temp folders of earlier commands that died (their pid is gone) beside out."""
    from .processes import pid_alive

    out = Path(out)
    if not out.parent.is_dir():
        return
    for prefix in (_TMP, _OLD):
        for stale in out.parent.glob(f".{out.name}{prefix}*"):
            pid = stale.name[len(out.name) + 1 + len(prefix):]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_folder(out: Path, job: str, identity: dict, meta: dict) -> Iterator[Path]:
    """Yield a temp folder to fill; on success write meta (with job and identity) and swap it
    in for out. A full disk anywhere inside becomes a DiskFullError naming out."""
    out = Path(out).absolute()
    check_replaceable(out, job, identity)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(out) from None
        raise ModelError(f"cannot create {out.parent} ({e.strerror})", "choose another output folder") from None
    clean_stale(out)
    tmp = out.parent / f".{out.name}{_TMP}{os.getpid()}"
    old = out.parent / f".{out.name}{_OLD}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        yield tmp
        full_meta = {**meta, **identity, WRITTEN_BY: job}
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        check_replaceable(out, job, identity)  # again: something may have appeared meanwhile
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except Exception as e:
        if is_disk_full(e):
            shutil.rmtree(tmp, ignore_errors=True)  # free the space before the message reports it
            raise disk_full(out) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- single files

def write_file_once(path: Path, data: bytes) -> str:
    """Write data to path unless path holds something else; never replaces a user's file.

    Returns "written" (path was absent), "same" (it already held exactly data) or "kept"
    (it holds other content, left as it is). The file appears whole or not at all."""
    path = Path(path)
    if path.is_symlink() or path.exists():
        try:
            return "same" if path.is_file() and path.read_bytes() == data else "kept"
        except OSError:
            return "kept"
    tmp = path.with_name(f".{path.name}{_TMP}{os.getpid()}")
    try:
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # fails if path appeared meanwhile: never replaces it
        except FileExistsError:
            return "same" if path.read_bytes() == data else "kept"
        except OSError:  # a file system without hard links
            if path.exists() or path.is_symlink():
                return "kept"
            os.rename(tmp, path)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(path) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return "written"


def write_user_file(path: Path, data: bytes, fix: str) -> str:
    """write_file_once for a file the user named: a folder that cannot take it is a one-line
    error saying `fix` (a full disk stays the disk-full error)."""
    try:
        return write_file_once(path, data)
    except DiskFullError:
        raise
    except OSError as e:
        raise ConfigError(f"cannot write {path} ({e.strerror or e})", fix) from None
