"""Starting and stopping runs: run directories, detached supervisors, graceful stops.

Torch-free: the config is validated and the run directory prepared before anything heavy
loads, and ``--detach`` hands the run to a new session (``start_new_session``) so closing
the terminal, an SSH drop or a tmux kill-pane never stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import stop_signal

from .contract import rundir
from .contract.config import Config, absolute_paths, dump_yaml, load_config, shown, where
from .distributed import make_plan, supervise
from .contract.errors import ConfigError, DistributedError, TunewizError
from .contract.events import EventWriter, read_events
from .contract.processes import pid_alive
from .contract.optional_packages import require_packages

# The run's lock descriptor, inherited by a detached supervisor from its launcher.
LOCK_FD_ENV = "TUNEWIZ_RUN_LOCK_FD"


def start_training(target: str, *, resume: bool = False, detach: bool = False, node_rank: int | None = None,
                   output_dir: str = "work_dirs", say=print) -> int:
    """A user's `tunewiz train`: target is a config (a new run) or, with resume, a run
    directory or the config of the run to continue. Detached, the run goes to a supervisor
    in its own session and this returns at once; else it trains here."""
    if resume:
        run = _run_to_resume(target, output_dir)
        cfg = load_config(run / rundir.CONFIG)
    else:
        cfg = load_config(target)
        run = None
    plan = make_plan(cfg, node_rank)  # layout problems fail before a run directory exists
    require_packages(cfg, where=str(run / rundir.CONFIG) if run else target, cuda=bool(plan.devices))
    run = run or prepare_run(cfg, plan.node_rank)
    # One writer per run: the lock is taken before anything in the run is touched, and a
    # detached launch hands it to the supervisor it spawns (never unlocked in between).
    lock = _claim(run)
    if detach:
        proc = spawn_detached(run, resume=resume, node_rank=node_rank,
                              log_name="launcher.log" if plan.needs_launcher else "rank0.log", lock=lock)
        os.close(lock)
        say(f"training in the background (pid {proc.pid}); watch it with `tunewiz attach {run}`")
        say(str(run))
        return 0
    say(f"run directory: {run}")
    stop_signal.install()
    return _run_here(run, resume, node_rank, tee=True, lock=lock)


def supervise_detached(run: Path, resume: bool, node_rank: int | None) -> int:
    """The detached supervisor (engine/supervisor.py): the run directory is prepared and
    locked by its launcher. Stop requests first (SIGTERM waited, blocked, since the spawn),
    then the lock."""
    stop_signal.install()
    inherited = os.environ.pop(LOCK_FD_ENV, None)
    lock = rundir.adopt_lock(run, int(inherited)) if inherited else _claim(run)
    return _run_here(run, resume, node_rank, lock=lock)


def _claim(run: Path) -> int:
    """rundir.claim; a run with links leading out of it also gets its error event, where the
    events and state files themselves are safe to write."""
    try:
        return rundir.claim(run)
    except rundir.RunLinkError as e:
        root = run.resolve()
        if not all((run / f).resolve().parent == root for f in (rundir.EVENTS, rundir.STATE)):
            raise
        _fail(run, e)
        raise SystemExit(1) from None  # _fail has said it all: the one line and the error event


def prepare_run(cfg: Config, node_rank: int = 0) -> Path:
    """A fresh run directory with the config written first, so even a failed run keeps it.

    The run's config holds absolute paths: a relative path means the directory `tunewiz
    train` ran in, and `--resume`, `attach` or `convert` may run from anywhere else."""
    own = absolute_paths(cfg)
    try:
        run = rundir.new_run_dir(own.output_dir, own.name, f"-node{node_rank}" if node_rank else "")
    except OSError as e:  # not writable, a file in the way, a name too long for the filesystem
        raise ConfigError(f"{where(cfg, 'output_dir')}: output_dir: cannot create a run directory in "
                          f"{shown(own.output_dir)} ({e.strerror or e})",
                          "choose a folder you can write, or fix its permissions") from None
    (run / rundir.CONFIG).write_text(dump_yaml(own), encoding="utf-8")
    (run / rundir.EVENTS).touch()
    rundir.write_state(run, status="starting", created=time.time())
    return run


def _run_to_resume(target: str, output_dir: str) -> Path:
    p = Path(target)
    if rundir.is_run_dir(p):
        return p
    if p.is_file():
        cfg = load_config(p)
        runs = [r for r in rundir.list_runs(cfg.output_dir)
                if rundir.run_name(r) == cfg.name and not rundir.is_other_node(r)]
        if runs:
            return runs[0]
        raise ConfigError(f"no run of {cfg.name!r} under {cfg.output_dir} to resume",
                          f"start one with `tunewiz train {target}`")
    run = rundir.resolve_run(target, output_dir)
    if run is None:
        raise ConfigError(f"{target}: no such run or config", "give a run directory or the config it was started from")
    return run


def _run_here(run: Path, resume: bool, node_rank: int | None = None, tee: bool = False,
              lock: int | None = None) -> int:
    """One process trains in-process; several go through torchrun under this supervisor.
    `lock` is the run's lock (rundir.claim), held by this process until it exits."""
    from .train import run_training

    cfg = load_config(run / rundir.CONFIG)
    try:
        plan = make_plan(cfg, node_rank)
    except TunewizError as e:
        return _fail(run, e)
    if not plan.needs_launcher:
        if tee:
            _tee_output(run / rundir.LOGS / "rank0.log")
        return run_training(run, resume=resume)
    if tee:
        _tee_output(run / rundir.LOGS / "launcher.log")
    # A stop asked of this supervisor goes to rank 0, which tells the other ranks at the step.
    stop_signal.on_stop(lambda: _forward_stop(run))
    try:
        code = supervise(cfg, plan, run, resume, lock=lock)
    except TunewizError as e:
        return _fail(run, e)
    events = read_events(run / rundir.EVENTS) if plan.node_rank == 0 else []
    errors = [ev for ev in events if ev["type"] == "error"]
    if code != 0 and errors:
        print(f"tunewiz: error: {errors[-1]['msg']} ({errors[-1]['hint']})", file=sys.stderr, flush=True)
    if plan.node_rank == 0 and not any(ev["type"] == "done" for ev in events):
        # Workers died without a word (killed, lost a node): the run must not look alive.
        return _fail(run, DistributedError(f"the training processes exited with code {code}",
                                           f"see the per-rank logs in {run / rundir.LOGS}"))
    if plan.node_rank == 0:
        rundir.write_state(run, status=rundir.run_info(run).status)
    else:
        rundir.write_state(run, status="completed" if code == 0 else "failed")
    return code


def _forward_stop(run: Path) -> None:
    """Pass SIGTERM to rank 0 once it has written its pid (it installs its stop handling
    before that); until then a thread waits for it, so the signal handler never blocks."""
    def forward():
        while True:
            pid = rundir.read_state(run).get("pid")
            if pid and pid != os.getpid() and pid_alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                return
            if rundir.read_state(run).get("status") in rundir.FINISHED:
                return
            time.sleep(0.2)

    threading.Thread(target=forward, daemon=True, name="forward-stop").start()


def _fail(run: Path, err: TunewizError) -> int:
    """A failure outside the workers still ends the run with an error and a done event
    (written if the disk lets it: the one line on stderr goes out regardless)."""
    try:
        w = EventWriter(run / rundir.EVENTS)
        w.try_emit("error", kind=err.kind, msg=err.msg, hint=err.hint)
        w.try_emit("done", status="failed", path=None)
        w.close()
        rundir.write_state(run, status="failed")
    except (OSError, TunewizError):
        pass
    with contextlib.suppress(OSError, ValueError):
        print(f"tunewiz: error: {err.one_line()}", file=sys.stderr, flush=True)
    return 1


def _tee_output(path: Path) -> None:
    """Foreground runs still keep their log in the run directory. A terminal that goes away
    (SSH drop, closed pipe) must not kill the run: its write errors are dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unbuffered, one write(2) per call: a full disk fails that write and nothing else (a
    # buffered file would fail again on every flush and at exit, "lost sys.stderr").
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    class Tee:
        def __init__(self, stream):
            self.stream = stream

        def write(self, s):
            with contextlib.suppress(OSError):
                os.write(log, s.encode("utf-8", "backslashreplace"))
            try:
                self.stream.write(s)
            except (OSError, ValueError):
                pass
            return len(s)

        def flush(self):
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass

        def __getattr__(self, name):
            return getattr(self.stream, name)

    sys.stdout, sys.stderr = Tee(sys.stdout), Tee(sys.stderr)


def spawn_detached(run: Path, resume: bool = False, node_rank: int | None = None,
                   log_name: str = "rank0.log", lock: int | None = None) -> subprocess.Popen:
    """Start the run in its own session, output to logs/, and record its pid. `lock` (the
    run's lock descriptor) is passed down for the supervisor to keep. The supervisor starts
    with SIGTERM blocked (a signal mask survives exec): a `tunewiz stop` before it has
    installed its handlers waits for them instead of killing it without a word."""
    cmd = [sys.executable, "-m", "tunewiz.engine.supervisor", "--run-dir", str(run)]
    if resume:
        cmd.append("--resume")
    if node_rank is not None:
        cmd += ["--node-rank", str(node_rank)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if lock is not None:
        env[LOCK_FD_ENV] = str(lock)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with open(run / rundir.LOGS / log_name, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, close_fds=True,
                                    pass_fds=() if lock is None else (lock,))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    rundir.write_state(run, pid=proc.pid, pgid=proc.pid, status="running")
    return proc


def request_stop(run: Path, wait: bool = False, say=print) -> None:
    """Ask a running run to checkpoint and stop (SIGTERM to its supervisor); with wait,
    return once the process is gone and the run's lock is free."""
    info = rundir.run_info(run)
    pid = info.state.get("pid")
    if info.status not in rundir.LIVE or not pid_alive(pid):
        say(f"{run.name} is not running ({info.status})")
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended between the look and the signal
        say(f"{run.name} is not running ({rundir.run_info(run).status})")
        return
    say(f"asked {run.name} (pid {pid}) to checkpoint and stop")
    if wait:
        # Until the process is gone, not just its status: the run's lock is held to the end
        # (by a torchrun launch's supervisor, a moment after rank 0), and a `--resume` right
        # after must find the run free.
        while pid_alive(pid) or rundir.is_locked(run):
            time.sleep(0.2)
        say(f"{run.name}: {rundir.run_info(run).status}")
