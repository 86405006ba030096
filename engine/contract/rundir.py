"""The run directory contract. Torch-free (the TUI lists and watches runs with it).

``<output_dir>/<name>-<YYYYmmdd-HHMMSS>/`` holds config.yaml, events.jsonl, state.json
(pid, pgid, host, status), logs/, checkpoints/step-N/, adapter/ or hf/, merged/ and
eval/step-N.txt, and train.lock (held by the one process that trains it). A new run never
reuses an existing directory, and a run writes only inside its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, TunewizError
from .events import read_events
from .processes import pid_alive
from .run_summary import CONVERTIBLE, FINISHED, LIVE, RunStatus, RunSummary, summarize  # noqa: F401

CONFIG = "config.yaml"
EVENTS = "events.jsonl"
STATE = "state.json"
LOGS = "logs"
CHECKPOINTS = "checkpoints"
LOCK = "train.lock"
MARKER = "trainer_state.json"  # written last: a checkpoint folder without it is not one
EVAL = "eval"                  # eval/step-N.txt: the answers to the fixed prompts
STEP = "step-"                 # checkpoints/step-N/, eval/step-N.txt
# A checkpoint folder being written (step-N.tmp) or being deleted (step-N.old): never listed.
WRITING, RETIRING = ".tmp", ".old"
ADAPTER = "adapter"            # `convert` of a LoRA / QLoRA run: the PEFT adapter
HF = "hf"                      # `convert` of a full run: the Hugging Face model
MERGED = "merged"              # `merge` of adapter/ into the base: the model to chat with
# What a run writes (and deletes) inside its folder; none of it may lead outside.
WRITTEN = (CONFIG, EVENTS, STATE, LOGS, CHECKPOINTS, EVAL, ADAPTER, HF, MERGED, LOCK)
# Entries in these folders are written or deleted one by one, so each is checked too.
WRITTEN_DIRS = (LOGS, CHECKPOINTS, EVAL)
_RUN_RE = re.compile(r"-\d{8}-\d{6}(-\d+)?(-node\d+)?$")


def new_run_dir(output_dir: str | Path, name: str, suffix: str = "") -> Path:
    """Create a fresh run directory; a clash in the same second gets a -2, -3... suffix.
    Nodes other than 0 of a multi-node run add -nodeK: their folder holds only logs."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = root / ((f"{name}-{stamp}" if i == 1 else f"{name}-{stamp}-{i}") + suffix)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / LOGS).mkdir()
        return path
    raise RuntimeError(f"cannot create a run directory under {root}")


def write_state(run: Path, **fields) -> dict:
    """Merge fields into state.json atomically (write a temp file, then rename)."""
    state = read_state(run)
    state.update(fields)
    tmp = run / f".{STATE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, run / STATE)
    except OSError as e:
        from .errors import disk_full, is_disk_full

        if not is_disk_full(e):
            raise
        tmp.unlink(missing_ok=True)
        raise disk_full(run / STATE, f"`tunewiz train {run} --resume`") from None
    return state


def read_state(run: Path) -> dict:
    try:
        return json.loads((Path(run) / STATE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def mark_running(run: Path) -> dict:
    return write_state(run, pid=os.getpid(), pgid=os.getpgid(0), host=socket.gethostname(),
                       status="running", updated=time.time())


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file() and bool(_RUN_RE.search(path.name))


def run_name(path: Path) -> str:
    """The config name a run directory was made for (its timestamp suffix removed)."""
    return _RUN_RE.sub("", Path(path).name)


def is_other_node(path: Path) -> bool:
    """A -nodeK folder: logs of a node other than 0, not a run to resume or attach."""
    return bool(re.search(r"-node\d+$", Path(path).name))


def list_runs(output_dir: str | Path) -> list[Path]:
    """Run directories under output_dir, newest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if is_run_dir(p)]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def resolve_run(arg: str | None, output_dir: str | Path = "work_dirs") -> Path | None:
    """A run given as a path, a directory name under output_dir, or None for the newest."""
    if arg:
        p = Path(arg)
        if is_run_dir(p):
            return p
        candidate = Path(output_dir) / arg
        if is_run_dir(candidate):
            return candidate
        matches = [r for r in list_runs(output_dir) if r.name.startswith(arg)]
        return matches[0] if matches else None
    runs = list_runs(output_dir)
    return runs[0] if runs else None


def require_run(arg: str | None, output_dir: str | Path = "work_dirs") -> Path:
    """resolve_run for commands that act on an existing run: none found is a user error."""
    run = resolve_run(arg, output_dir)
    if run is None:
        raise TunewizError(f"no run {arg or ''} under {output_dir}".replace("  ", " "),
                           "list runs with `tunewiz runs`")
    return run


@dataclass
class RunInfo:
    path: Path
    summary: RunSummary
    state: dict

    @property
    def status(self) -> str:
        return self.summary.status


def engine_gone(state: dict) -> RunStatus | None:
    """The one liveness rule, for a run whose events still say it is live: once its process
    has exited, the final status state.json holds, or failed for a pid that died on this
    host without one; None while the engine may still be working (or runs elsewhere)."""
    if not isinstance(state, dict):  # a damaged state.json says nothing about the engine
        return None
    alive = pid_alive(state.get("pid"))
    if state.get("status") in FINISHED and not alive:
        return state["status"]
    same_host = state.get("host") in (None, socket.gethostname())
    if same_host and state.get("pid") and not alive:
        return "failed"
    return None


def silent_death(run: Path) -> dict:
    """The error a run shows when its engine died without writing one."""
    return {"kind": "internal", "msg": "the engine process ended without a word", "hint": f"see {Path(run) / LOGS}"}


def run_info(run: Path) -> RunInfo:
    """Status folded from events, corrected by the pid: a dead engine is never 'running'."""
    run = Path(run)
    summary = summarize(read_events(run / EVENTS))
    state = read_state(run)
    if summary.status in LIVE and (gone := engine_gone(state)):
        summary.status = gone
        if gone == "failed" and summary.error is None:
            summary.error = silent_death(run)
    return RunInfo(run, summary, state)


def output_plan(run: Path) -> list[list[str]]:
    """The `tunewiz` commands, in order, that turn a finished run into a model to chat with
    (`tunewiz export RUN` and the TUI's Convert & merge both run exactly these): convert
    to hf/ for full fine-tuning; convert to adapter/, then merge into merged/ otherwise."""
    from .config import load_config

    run = Path(run)
    cfg = load_config(run / CONFIG)
    if not cfg.uses_adapter:
        return [["convert", str(run), str(run / HF)]]
    return [["convert", str(run), str(run / ADAPTER)],
            ["merge", cfg.model.path, str(run / ADAPTER), str(run / MERGED)]]


def chat_model(run: Path) -> Path:
    """Where the output plan leaves the model to chat with."""
    run = Path(run)
    return run / HF if (run / HF).is_dir() and not (run / MERGED).is_dir() else run / MERGED


def checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints (those with their marker file), oldest first."""
    root = Path(run) / CHECKPOINTS
    if not root.is_dir():
        return []
    # "step-N.tmp" is a checkpoint being written and "step-N.old" one being deleted
    # (checkpoint.py renames before it writes the marker's folder into place, and before
    # it deletes): neither counts, nor breaks the sort.
    done = [p for p in root.glob(f"{STEP}*")
            if p.name[len(STEP):].isdigit() and (p / MARKER).is_file()]
    return sorted(done, key=lambda p: int(p.name[len(STEP):]))


def checkpoint_dir(run: Path, step: int) -> Path:
    """Where the checkpoint of a step goes (checkpoint.py writes it beside, then renames)."""
    return Path(run) / CHECKPOINTS / f"{STEP}{step}"


def eval_answers(run: Path, step: int) -> Path:
    """The file with the answers to the fixed prompts at a step."""
    return Path(run) / EVAL / f"{STEP}{step}.txt"


def checkpoint_step(ckpt: Path) -> int | None:
    """The step a checkpoint's marker names (None when it cannot be read)."""
    try:
        return int(json.loads((Path(ckpt) / MARKER).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_stale(name: str) -> bool:
    """A checkpoint folder left half-written (.tmp) or half-deleted (.old) by a kill."""
    return name.startswith(STEP) and name.endswith((WRITING, RETIRING))


# ---------------------------------------------------------------- one writer per run

class RunBusyError(ConfigError):
    """Another process trains this run (it holds the run's lock)."""


def lock_run(run: Path) -> int:
    """Take the run's lock for this process (a flock on train.lock, released by the kernel
    when the holder dies however it dies) and return its descriptor, which the caller keeps
    open for as long as it trains. A held lock is RunBusyError naming the holder's pid."""
    run = Path(run)
    path = run / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot open {path}: {e.strerror}",
                          "a run folder must be writable and train.lock a plain file") from None
    if not _flock_soon(fd):
        holder = _lock_holder(fd) or read_state(run).get("pid") or "unknown"
        os.close(fd)
        raise RunBusyError(f"{run} is already being trained by pid {holder}",
                           f"stop it with `tunewiz stop {run}` or watch it with `tunewiz attach {run}`") from None
    _write_holder(fd)
    return fd


def _flock_soon(fd: int, tries: int = 10) -> bool:
    """The exclusive lock, retried for half a second: is_locked's probe (a shared lock held
    for microseconds) must never make a free run look busy."""
    for i in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if i < tries - 1:
                time.sleep(0.05)
    return False


def is_locked(run: Path) -> bool:
    """Whether a process holds the run's lock now (checked without creating or keeping it)."""
    try:
        fd = os.open(Path(run) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def adopt_lock(run: Path, fd: int) -> int:
    """The detached supervisor takes over the lock its launcher took (and passed down as
    an open descriptor), so the run is never unlocked between the two processes."""
    st, want = os.fstat(fd), os.stat(Path(run) / LOCK, follow_symlinks=False)
    if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
        raise RuntimeError(f"descriptor {fd} is not the lock of {run}")
    os.set_inheritable(fd, False)  # torchrun and its workers must not hold (or fight over) it
    _write_holder(fd)
    return fd


def _write_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:  # a full disk: the lock holds all the same, only its pid goes unnamed
        pass


def _lock_holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# ---------------------------------------------------------------- staying inside the run

class RunLinkError(ConfigError):
    """Something a run writes is a link that leads out of the run."""


def check_inside(run: Path) -> None:
    """Refuse a run whose files or folders (or the entries of logs/, checkpoints/, eval/)
    are links leading outside it: writing or rotating through them would write into, or
    delete from, another run or any other folder."""
    run = Path(run)
    root = run.resolve()
    for name in WRITTEN:
        p = run / name
        _check_one(p, root, run)
        if name in WRITTEN_DIRS and p.is_dir():
            for child in p.iterdir():
                _check_one(child, root, run)


def _check_one(p: Path, root: Path, run: Path) -> None:
    if not (p.is_symlink() or p.exists()):
        return
    target = p.resolve()
    if target == root or root in target.parents:
        return
    raise RunLinkError(f"{p} leads outside the run (to {target})",
                       f"a run writes only inside its own folder: replace the link with a real folder or file "
                       f"(`rm {p}`), then `tunewiz train {run} --resume`")


def clean_stale(run: Path) -> list[str]:
    """Remove what a killed writer left half done (step-N.tmp, step-N.old, state temp
    files). Only the lock holder calls this, after check_inside, so nothing here is another
    process's work in progress or outside the run. Returns the names removed."""
    run = Path(run)
    removed = []
    root = run / CHECKPOINTS
    stale = [p for p in root.iterdir() if is_stale(p.name)] if root.is_dir() else []
    stale += [p for p in run.glob(f".{STATE}.*.tmp")]
    for p in stale:
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed


def claim(run: Path) -> int:
    """Everything a writer does before it touches a run: the lock, the links check, and the
    leftovers of a killed predecessor. Returns the lock's descriptor."""
    fd = lock_run(run)
    try:
        check_inside(run)
        clean_stale(run)
    except BaseException:
        os.close(fd)
        raise
    return fd
