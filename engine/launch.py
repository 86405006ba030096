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
from .distributed import make_plan, node_commands, slurm_script, supervise
from .errors import ConfigError, DistributedError, TunewizError
from .events import EventWriter, pid_alive, read_events


def cmd_train(args) -> int:
    if args.run_dir:
        if "LOCAL_RANK" in os.environ:  # a torchrun worker
            from .train import run_training
            return run_training(Path(args.run_dir), resume=args.resume)
        # the detached supervisor: the run directory is already prepared
        return _run_here(Path(args.run_dir), args.resume, args.node_rank)
    if args.print_node_commands or args.slurm:
        return _print_launch_help(args)
    if args.resume:
        run = _run_to_resume(args.config, args.output_dir)
        cfg = load_config(run / rundir.CONFIG)
    else:
        cfg = load_config(args.config)
        run = None
    plan = make_plan(cfg, args.node_rank)  # layout problems fail before a run directory exists
    run = run or prepare_run(cfg, plan.node_rank)
    if args.detach:
        proc = spawn_detached(run, resume=args.resume, node_rank=args.node_rank,
                              log_name="launcher.log" if plan.needs_launcher else "rank0.log")
        print(f"training in the background (pid {proc.pid}); watch it with `tunewiz attach {run}`")
        print(run)
        return 0
    print(f"run directory: {run}", flush=True)
    return _run_here(run, args.resume, args.node_rank, tee=True)


def _print_launch_help(args) -> int:
    cfg = load_config(args.config)
    plan = make_plan(cfg, args.node_rank, launching=False)
    if args.slurm:
        script = slurm_script(args.config, cfg, plan)
        if args.slurm == "-":
            print(script, end="")
        else:
            Path(args.slurm).write_text(script)
            print(f"wrote {args.slurm}; submit it with `sbatch {args.slurm}`")
        return 0
    print(f"# {plan.nnodes} node(s) x {plan.nproc} process(es); node 0 listens on "
          f"{plan.master_addr}:{plan.master_port}")
    for k, line in enumerate(node_commands(args.config, plan)):
        print(f"{line}    # on node {k}")
    return 0


def prepare_run(cfg: Config, node_rank: int = 0) -> Path:
    """A fresh run directory with the config written first, so even a failed run keeps it."""
    run = rundir.new_run_dir(cfg.output_dir, cfg.name, f"-node{node_rank}" if node_rank else "")
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


def _run_here(run: Path, resume: bool, node_rank: int | None = None, tee: bool = False) -> int:
    """One process trains in-process; several go through torchrun under this supervisor."""
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
    try:
        code = supervise(cfg, plan, run, resume)
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


def _fail(run: Path, err: TunewizError) -> int:
    """A failure outside the workers still ends the run with an error and a done event."""
    w = EventWriter(run / rundir.EVENTS)
    w.emit("error", kind=err.kind, msg=err.msg, hint=err.hint)
    w.emit("done", status="failed", path=None)
    w.close()
    rundir.write_state(run, status="failed")
    print(f"tunewiz: error: {err.one_line()}", file=sys.stderr, flush=True)
    return 1


def _tee_output(path: Path) -> None:
    """Foreground runs still keep their log in the run directory. A terminal that goes away
    (SSH drop, closed pipe) must not kill the run: its write errors are dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", encoding="utf-8", buffering=1)

    class Tee:
        def __init__(self, stream):
            self.stream = stream

        def write(self, s):
            log.write(s)
            try:
                self.stream.write(s)
            except (OSError, ValueError):
                pass
            return len(s)

        def flush(self):
            log.flush()
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass

        def __getattr__(self, name):
            return getattr(self.stream, name)

    sys.stdout, sys.stderr = Tee(sys.stdout), Tee(sys.stderr)


def spawn_detached(run: Path, resume: bool = False, node_rank: int | None = None,
                   log_name: str = "rank0.log") -> subprocess.Popen:
    """Start the run in its own session, output to logs/, and record its pid."""
    log = open(run / rundir.LOGS / log_name, "ab")
    cmd = [sys.executable, "-m", "tunewiz", "train", str(run / rundir.CONFIG), "--run-dir", str(run)]
    if resume:
        cmd.append("--resume")
    if node_rank is not None:
        cmd += ["--node-rank", str(node_rank)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env, close_fds=True)
    rundir.write_state(run, pid=proc.pid, pgid=proc.pid, status="running")
    return proc


def cmd_stop(args) -> int:
    run = rundir.require_run(args.run, args.output_dir)
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

