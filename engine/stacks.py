"""What every training process of a run is doing right now (`tunewiz stacks RUN`).

Every tunewiz process prints all its threads' Python stacks on SIGUSR1 and carries on
(see ``tunewiz.cli.main``); a training rank's stderr is its log in ``logs/``. This command
finds the run's processes on this machine, signals them, and prints what each added to
its log: the first thing to look at when a multi-GPU run seems stuck (a rank waiting in a
collective that the others never reach). On other nodes, run it there.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .contract import rundir
from .contract.errors import TunewizError
from .contract.processes import pid_alive


def run_processes(run: Path) -> list[int]:
    """Pids on this machine that train `run`: the processes started with `--run-dir RUN`
    (detached runs and torchrun's workers) and the pid in state.json. torchrun itself is
    left out: it has no handler and SIGUSR1 would kill it."""
    run = run.resolve()
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in args]
        if "--run-dir" in args and "torch.distributed.run" not in args:
            i = args.index("--run-dir")
            if i + 1 < len(args) and Path(args[i + 1]).resolve() == run:
                found.add(int(proc.name))
    pid = rundir.run_info(run).state.get("pid")
    if pid and pid_alive(pid):
        found.add(int(pid))
    found.discard(os.getpid())
    return sorted(found)


def collect_stacks(run: Path, wait_s: float) -> tuple[list[int], dict[str, str]]:
    """Signal the run's processes here and give back, per log file, the stacks they added
    to it within wait_s seconds."""
    pids = run_processes(run)
    if not pids:
        raise TunewizError(f"{run.name} has no process on this machine ({rundir.run_info(run).status})",
                           "on a multi-node run, run `tunewiz stacks` on the node that looks stuck")
    logs = sorted((run / rundir.LOGS).glob("*.log"))
    sizes = {p: p.stat().st_size for p in logs}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    time.sleep(wait_s)  # the processes write their stacks when the signal reaches them
    stacks = {}
    for path in sorted((run / rundir.LOGS).glob("*.log")):
        with open(path, "rb") as f:
            f.seek(sizes.get(path, 0))
            lines = f.read().decode(errors="replace").splitlines()
        first = next((i for i, line in enumerate(lines) if "(most recent call first)" in line), None)
        if first is not None:
            stacks[path.name] = "\n".join(lines[first:]).rstrip()
    return pids, stacks
