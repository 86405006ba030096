"""What ``tunewiz runs`` and Home show for each run, read cheaply and one run at a time. Torch-free.

Each run is read in isolation: a run whose events carry a field of the wrong type, whose
state.json is not an object, or whose folder cannot be read is listed as ``unreadable``
with the reason, and the other runs are listed as usual.

Reading stays cheap however long a run gets. The fold of a run's events (status, step,
loss...) is kept with the byte offset it covers, in memory for the life of the process
(Home refreshes every few seconds) and in a small cache file per run under
``$TUNEWIZ_CACHE/runs/`` (``tunewiz runs`` in a loop); the next listing reads only the
events written since. The cache lives outside the run directory because readers never
write into a run (two TUIs may watch one, the folder may be read-only), and it needs
nothing from the engine: the events file stays the one source of truth. A cache entry is
used only when the events file is the same file (device, inode) and still ends, at the
cached offset, with the bytes the cache saw there; anything else is read from the start.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import rundir
from .cache_dirs import cache_root
from .events import EventReader
from .run_summary import FINISHED, LIVE

UNREADABLE = "unreadable"
CACHE_VERSION = 1
_TAIL = 64  # bytes before the offset that must still be there for the cache to count


class BadRun(Exception):
    """One run's files hold something listing cannot read; the message says what."""


@dataclass
class Fold:
    """The listing's summary of the events up to ``offset`` (JSON-serializable)."""

    status: str = "starting"
    step: int = 0
    total: int = 0
    loss: float | None = None
    eta_s: float | None = None
    started: float | None = None
    problem: str = ""

    def apply(self, ev: dict) -> None:
        kind = ev.get("type")
        if kind == "start":
            self.total = _int(ev, "total_steps", self.total)
            self.started = self.started or _num(ev, "t", None)
            self.status = "running"
        elif kind == "step":
            self.step = _int(ev, "step", self.step)
            self.total = _int(ev, "total", self.total)
            self.loss, self.eta_s = _num(ev, "loss", None), _num(ev, "eta_s", None)
            self.status = "running"
        elif kind == "done":
            status = ev.get("status", "failed")
            if status not in FINISHED:
                raise BadRun(f"a done event has status {_show(status)}")
            self.status = status


def _num(ev: dict, key: str, default):
    value = ev.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRun(f"a {ev.get('type')} event has {key} {_show(value)}, not a number")
    return float(value)


def _int(ev: dict, key: str, default: int) -> int:
    value = _num(ev, key, None)
    if value is None:
        return default
    if not math.isfinite(value) or abs(value) > 2**62:
        raise BadRun(f"a {ev.get('type')} event has {key} {_show(ev.get(key))}, not a count")
    return int(value)


def _show(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class ListedRun:
    path: Path
    name: str
    status: str
    step: int = 0
    total: int = 0
    loss: float | None = None
    started: float | None = None
    eta_s: float | None = None
    problem: str = ""          # why the run is unreadable ("" when it is not)


@dataclass
class _Entry:
    dev: int
    ino: int
    offset: int
    tail: str
    fold: dict = field(default_factory=dict)


class Lister:
    """Lists runs; keeps each run's fold between calls (thread-safe)."""

    def __init__(self, cache_dir: Path | None | bool = None):
        self._memory: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        if cache_dir is None:
            cache_dir = cache_root() / "runs"
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._pruned = False

    def list(self, output_dir: str | Path) -> list[ListedRun]:
        return [self.read(run) for run in find_runs(output_dir)]

    def read(self, run: Path) -> ListedRun:
        run = Path(run)
        try:
            return self._read(run)
        except BadRun as e:
            return ListedRun(run, run.name, UNREADABLE, problem=str(e))
        except OSError as e:
            return ListedRun(run, run.name, UNREADABLE, problem=f"{e.strerror or e}")
        except Exception as e:  # noqa: BLE001 - one odd run must never hide the others
            return ListedRun(run, run.name, UNREADABLE, problem=f"{type(e).__name__}: {e}"[:200])

    def _read(self, run: Path) -> ListedRun:
        fold = self._fold(run / rundir.EVENTS)
        if fold.problem:
            raise BadRun(fold.problem)
        state = _read_state(run)
        status = fold.status
        if status in LIVE:
            status = rundir.engine_gone(state) or status
        return ListedRun(run, run.name, status, fold.step, fold.total, fold.loss, fold.started,
                         fold.eta_s if status == "running" else None)

    def _fold(self, events: Path) -> Fold:
        key = str(events.absolute())
        try:
            st = os.stat(events)
        except FileNotFoundError:
            return Fold()
        with self._lock:
            entry = self._memory.get(key) or self._load(key)
        fold = Fold()
        reader = EventReader(events)
        if entry and (entry.dev, entry.ino) == (st.st_dev, st.st_ino) and entry.offset <= st.st_size \
                and _tail(events, entry.offset) == entry.tail:
            try:
                fold = Fold(**entry.fold)
                reader.offset = entry.offset
            except TypeError:  # a cache from another version
                fold = Fold()
        if fold.problem:
            return fold
        start = reader.offset
        try:
            while batch := reader.read_new(max_bytes=8 << 20):
                for ev in batch:
                    fold.apply(ev)
        except BadRun as e:
            fold.problem = f"{events.name}: {e}"
        new = _Entry(st.st_dev, st.st_ino, reader.offset, _tail(events, reader.offset), asdict(fold))
        with self._lock:
            self._memory[key] = new
        if reader.offset != start or entry is None:
            self._save(key, new)
        return fold

    def _cache_file(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest() + ".json")

    def _load(self, key: str) -> _Entry | None:
        path = self._cache_file(key)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.pop("v", None) != CACHE_VERSION or data.pop("key", None) != key:
                return None
            entry = _Entry(**data)
            ints = (entry.dev, entry.ino, entry.offset)
            if not (all(type(i) is int for i in ints) and isinstance(entry.tail, str) and isinstance(entry.fold, dict)):
                return None  # a damaged cache file: read the events instead
            return entry
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def _save(self, key: str, entry: _Entry) -> None:
        path = self._cache_file(key)
        if path is None:
            return
        if not self._pruned:
            self._pruned = True
            _prune(path.parent)
        try:  # a cache only: a read-only or full home just means reading more next time
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"v": CACHE_VERSION, "key": key, **asdict(entry)}), encoding="utf-8")
            os.replace(tmp, path)
        except (OSError, ValueError):
            pass


def _prune(cache_dir: Path, max_age_s: float = 30 * 86400) -> None:
    """Drop entries not written for a month (runs deleted since; a finished run whose entry
    goes is simply read once more)."""
    import time

    cutoff = time.time() - max_age_s
    try:
        for f in cache_dir.glob("*.json"):
            try:
                if f.stat().st_mtime < cutoff:
                    f.unlink()
            except OSError:
                continue
    except OSError:
        pass


def _tail(path: Path, offset: int) -> str:
    if offset <= 0:
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, offset - _TAIL))
        return f.read(min(offset, _TAIL)).hex()


def _read_state(run: Path) -> dict:
    try:
        raw = (run / rundir.STATE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise BadRun(f"{rundir.STATE} is not text") from None
    try:
        state = json.loads(raw)
    except ValueError:
        raise BadRun(f"{rundir.STATE} is not valid JSON") from None
    if not isinstance(state, dict):
        raise BadRun(f"{rundir.STATE} is not a JSON object")
    pid = state.get("pid")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31):
        raise BadRun(f"{rundir.STATE} has pid {_show(pid)}")
    for key in ("host", "status"):
        if state.get(key) is not None and not isinstance(state[key], str):
            raise BadRun(f"{rundir.STATE} has {key} {_show(state[key])}")
    return state


def find_runs(output_dir: str | Path) -> list[Path]:
    """Run directories under output_dir, newest first; an entry that vanishes or cannot be
    looked at while listing is skipped, never fatal."""
    root = Path(output_dir)
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    runs = []
    for p in entries:
        try:
            if rundir.is_run_dir(p):
                runs.append((p.stat().st_mtime, p.name, p))
        except (OSError, ValueError):
            continue
    return [p for _, _, p in sorted(runs, key=lambda r: (r[0], r[1]), reverse=True)]


_default: Lister | None = None


def default_lister() -> Lister:
    global _default
    if _default is None:
        _default = Lister()
    return _default
