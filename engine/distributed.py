"""Several processes and nodes, through PyTorch's own launcher (torchrun).

The torch-free planning (processes per node, node ranks, node commands, Slurm scripts)
is in contract.layout_plan. ``supervise`` runs torchrun with static rendezvous and, before
that, a join check so that a node that never arrives gives a message naming it instead
of an NCCL stack trace.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .contract import rundir
from .contract.config import Config
from .contract.errors import DistributedError
# The plan is the contract's (the wizard shows it); the launcher and the CLI use it from here.
from .contract.layout_plan import Plan, make_plan, node_commands, slurm_script  # noqa: F401


def torchrun_command(plan: Plan, run: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={plan.nnodes}",
           f"--node-rank={plan.node_rank}", f"--nproc-per-node={plan.nproc}",
           f"--master-addr={plan.master_addr}", f"--master-port={plan.master_port}",
           "--max-restarts=0", "-m", "tunewiz.engine.rank_worker", "--run-dir", str(run)]
    return cmd + (["--resume"] if resume else [])


# ----------------------------------------------------------------------------- join check

def wait_for_nodes(plan: Plan, run: Path) -> None:
    """Every node's supervisor meets at master_addr:master_port before torchrun starts.

    Node 0 hosts a small key-value store there; the others connect and register. A node
    that does not arrive within join_timeout_s stops every node with a message that names
    the missing node ranks and the address, instead of a rendezvous stack trace.
    """
    from datetime import timedelta

    import torch.distributed as dist

    timeout = timedelta(seconds=plan.join_timeout_s)
    where = f"{plan.master_addr}:{plan.master_port}"
    try:
        store = dist.TCPStore(plan.master_addr, plan.master_port, world_size=None,
                              is_master=plan.node_rank == 0, timeout=timeout, wait_for_workers=False)
    except Exception as e:  # noqa: BLE001 - connect/bind failures come as several types
        if plan.node_rank == 0:
            raise DistributedError(f"cannot listen on {where} ({str(e).splitlines()[0]})",
                                   "choose a free layout.master_port (or PORT)") from None
        raise DistributedError(f"node {plan.node_rank} could not reach node 0 at {where} within "
                               f"{plan.join_timeout_s}s",
                               "start node 0 first (`--node-rank 0`), and check the address, port and firewall") from None
    store.set(f"tunewiz/node/{plan.node_rank}", os.uname().nodename)
    store.add("tunewiz/joined", 1)
    deadline = time.time() + plan.join_timeout_s
    if plan.node_rank == 0:
        while int(store.add("tunewiz/joined", 0)) < plan.nnodes:
            if time.time() > deadline:
                missing = [k for k in range(plan.nnodes) if not store.check([f"tunewiz/node/{k}"])]
                store.set("tunewiz/abort", f"node(s) {missing} did not join")
                raise DistributedError(
                    f"node rank(s) {', '.join(map(str, missing))} did not join {where} within {plan.join_timeout_s}s",
                    "run `tunewiz train CONFIG --node-rank K` on each missing node (see --print-node-commands)")
            time.sleep(0.2)
        store.set("tunewiz/go", "1")
        # Let every node read "go" before the store (and its port) goes away for torchrun.
        while int(store.add("tunewiz/left", 0)) < plan.nnodes - 1 and time.time() < deadline + 30:
            time.sleep(0.1)
    else:
        while not store.check(["tunewiz/go"]):
            if store.check(["tunewiz/abort"]):
                raise DistributedError(f"node 0 gave up: {store.get('tunewiz/abort').decode()}",
                                       "start every node within layout.join_timeout_s")
            if time.time() > deadline:
                raise DistributedError(f"node 0 at {where} did not start the run within {plan.join_timeout_s}s",
                                       "check that every node uses the same config and nnodes")
            time.sleep(0.2)
        store.add("tunewiz/left", 1)
        time.sleep(1.0)  # node 0 closes its store; torchrun then takes the port
    del store


def supervise(cfg: Config, plan: Plan, run: Path, resume: bool, lock: int | None = None) -> int:
    """Run torchrun for this node; the workers write events (rank 0) and per-rank logs.
    torchrun inherits the run's lock (a flock is held while any process holding its
    descriptor lives): a supervisor killed with SIGKILL leaves the run locked for as long as
    its workers train, so no second writer can start beside them."""
    if plan.nnodes > 1:
        wait_for_nodes(plan, run)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNEWIZ_JOIN_TIMEOUT_S": str(plan.join_timeout_s)}
    if plan.devices is not None:
        # The chosen devices by uuid: their meaning does not depend on CUDA's device order.
        env["CUDA_VISIBLE_DEVICES"] = plan.cuda_visible or ",".join(map(str, plan.devices))
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    env.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = torchrun_command(plan, run, resume)
    print(f"launching {plan.world_size} processes ({plan.nnodes} node(s) x {plan.nproc}); "
          f"launcher output in {run / rundir.LOGS / 'launcher-torchrun.log'}", flush=True)
    # torchrun's own chatter (and its stack traces when a worker fails) goes to a file; the
    # terminal follows rank 0's log instead, and a failure ends with the run's error line.
    with open(run / rundir.LOGS / "launcher-torchrun.log", "ab") as log:
        log.write((" ".join(shlex.quote(c) for c in cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=() if lock is None else (lock,))
        follow(run / rundir.LOGS / f"rank{plan.node_rank * plan.nproc}.log", proc)
    return proc.returncode


def follow(path: Path, proc: subprocess.Popen) -> None:
    """Copy new lines of path to stdout until proc ends (a foreground run's live view)."""
    offset = 0
    while True:
        ended = proc.poll() is not None
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if ended:
            return
        time.sleep(0.5)
