"""`tunewiz train` and `tunewiz stop`: run directories, detached supervisors, graceful stops.

Torch-free: the config is validated and the run directory prepared before anything heavy
loads, and ``--detach`` hands the run to a new session (``start_new_session``) so closing
the terminal, an SSH drop or a tmux kill-pane never stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import rundir
from .config import Config, dump_yaml, load_config
from .errors import ConfigError, TunewizError
from .events import pid_alive


def cmd_train(args) -> int:
    if args.run_dir:  # the detached child: the run directory is already prepared
        return _run_here(Path(args.run_dir), args.resume)
    if args.resume:
        run = _run_to_resume(args.config, args.output_dir)
    else:
        cfg = load_config(args.config)
        run = prepare_run(cfg)
    if args.detach:
        proc = spawn_detached(run, resume=args.resume)
        print(f"training in the background (pid {proc.pid}); watch it with `tunewiz attach {run}`")
        print(run)
        return 0
    print(f"run directory: {run}", flush=True)
    return _run_here(run, args.resume, tee=True)


def prepare_run(cfg: Config) -> Path:
    """A fresh run directory with the config written first, so even a failed run keeps it."""
    run = rundir.new_run_dir(cfg.output_dir, cfg.name)
    (run / rundir.CONFIG).write_text(dump_yaml(cfg), encoding="utf-8")
    (run / rundir.EVENTS).touch()
    rundir.write_state(run, status="starting", created=time.time())
    return run


def _run_to_resume(target: str, output_dir: str) -> Path:
    p = Path(target)
    if rundir.is_run_dir(p):
        return p
    if p.is_file():
        cfg = load_config(p)
        runs = [r for r in rundir.list_runs(cfg.output_dir) if r.name.rsplit("-", 2)[0] == cfg.name
                or r.name.startswith(cfg.name + "-")]
        if runs:
            return runs[0]
        raise ConfigError(f"no run of {cfg.name!r} under {cfg.output_dir} to resume",
                          f"start one with `tunewiz train {target}`")
    run = rundir.resolve_run(target, output_dir)
    if run is None:
        raise ConfigError(f"{target}: no such run or config", "give a run directory or the config it was started from")
    return run


def _run_here(run: Path, resume: bool, tee: bool = False) -> int:
    from .train import run_training

    if tee:
        _tee_output(run / rundir.LOGS / "rank0.log")
    return run_training(run, resume=resume)


def _tee_output(path: Path) -> None:
    """Foreground runs still keep their log in the run directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", encoding="utf-8", buffering=1)

    class Tee:
        def __init__(self, stream):
            self.stream = stream

        def write(self, s):
            log.write(s)
            return self.stream.write(s)

        def flush(self):
            log.flush()
            self.stream.flush()

        def __getattr__(self, name):
            return getattr(self.stream, name)

    sys.stdout, sys.stderr = Tee(sys.stdout), Tee(sys.stderr)


def spawn_detached(run: Path, resume: bool = False) -> subprocess.Popen:
    """Start the run in its own session, output to logs/, and record its pid."""
    log = open(run / rundir.LOGS / "rank0.log", "ab")
    cmd = [sys.executable, "-m", "tunewiz", "train", str(run / rundir.CONFIG), "--run-dir", str(run)]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env, close_fds=True)
    rundir.write_state(run, pid=proc.pid, pgid=proc.pid, status="running")
    return proc


def cmd_stop(args) -> int:
    run = rundir.resolve_run(args.run, args.output_dir)
    if run is None:
        raise TunewizError(f"no run {args.run or ''} under {args.output_dir}".replace("  ", " "),
                           "list runs with `tunewiz runs`")
    info = rundir.run_info(run)
    pid = info.state.get("pid")
    if info.status not in ("starting", "running") or not pid_alive(pid):
        print(f"{run.name} is not running ({info.status})")
        return 0
    os.kill(pid, signal.SIGTERM)
    print(f"asked {run.name} (pid {pid}) to checkpoint and stop")
    if args.wait:
        while pid_alive(pid) and rundir.run_info(run).status in ("starting", "running"):
            time.sleep(0.5)
        print(f"{run.name}: {rundir.run_info(run).status}")
    return 0

