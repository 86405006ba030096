"""Several processes and nodes, through PyTorch's own launcher (torchrun).

Torch-free planning: how many processes this node runs (``layout.gpus``, or XTuner's
NPROC_PER_NODE on a CPU-only machine), which node this is, and the exact commands for
every node and for Slurm. ``supervise`` runs torchrun with static rendezvous and, before
that, a join check so that a node that never arrives gives a message naming it instead
of an NCCL stack trace.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .contract import rundir
from .contract.config import Config, shown, check_name
from .contract.errors import ConfigError, DistributedError

# XTuner's environment variables, accepted as overrides of the config's layout.
ENV_OVERRIDES = {"NNODES": "nnodes", "NODE_RANK": "node_rank", "ADDR": "master_addr", "PORT": "master_port"}


@dataclass
class Plan:
    nproc: int                  # processes on this node
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    devices: list[int] | None   # CUDA ids this node uses; None on CPU
    join_timeout_s: int

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    @property
    def needs_launcher(self) -> bool:
        return self.world_size > 1


def visible_gpus() -> list[int]:
    """GPU ids without importing torch: CUDA_VISIBLE_DEVICES, else nvidia-smi."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [int(x) for x in env.split(",") if x.strip().isdigit()]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return list(range(sum(1 for line in out.splitlines() if line.startswith("GPU "))))


def make_plan(cfg: Config, node_rank: int | None = None, launching: bool = True) -> Plan:
    """This node's share of the layout. launching=False only plans (node commands, Slurm
    scripts), which a CPU-only login node must be able to do for a GPU cluster."""
    layout = cfg.layout
    for env, key in ENV_OVERRIDES.items():
        if os.environ.get(env):
            value = os.environ[env]
            setattr(layout, key, _env_addr(env, value) if key == "master_addr" else
                    _env_int(env, value, 0 if key == "node_rank" else 1, 65535 if key == "master_port" else None))
    if node_rank is not None:
        layout.node_rank = node_rank
    if not 0 <= layout.node_rank < layout.nnodes:
        raise ConfigError(f"node rank {layout.node_rank} is outside 0..{layout.nnodes - 1}",
                          "give --node-rank between 0 and layout.nnodes - 1")
    gpus = visible_gpus()
    env_nproc = os.environ.get("NPROC_PER_NODE")
    if env_nproc:
        env_nproc = str(_env_int("NPROC_PER_NODE", env_nproc, 1, None))
    if gpus:
        if layout.gpus == "all":
            devices = gpus
        elif isinstance(layout.gpus, int):
            if layout.gpus > len(gpus):
                raise ConfigError(f"layout.gpus: {layout.gpus} GPUs asked, {len(gpus)} visible",
                                  f"set layout.gpus to at most {len(gpus)} or all")
            devices = gpus[:layout.gpus]
        else:
            missing = [g for g in layout.gpus if g not in gpus]
            if missing:
                raise ConfigError(f"layout.gpus: GPU {missing[0]} is not visible (visible: {gpus})",
                                  "list visible GPU ids, or use all")
            devices = list(layout.gpus)
        nproc = int(env_nproc) if env_nproc else len(devices)
        devices = devices[:nproc]
    else:
        # CPU-only: one process unless asked for more (gloo); useful for tests and laptops.
        devices, nproc = None, int(env_nproc) if env_nproc else 1
    if launching and cfg.layout.deepspeed != "none" and not gpus:
        raise ConfigError(f"layout.deepspeed: {cfg.layout.deepspeed} needs CUDA GPUs and none is visible",
                          "set layout.deepspeed: none on this machine")
    return Plan(nproc=nproc, nnodes=layout.nnodes, node_rank=layout.node_rank, master_addr=str(layout.master_addr),
                master_port=int(layout.master_port), devices=devices, join_timeout_s=layout.join_timeout_s)


def torchrun_command(plan: Plan, config: Path, run: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={plan.nnodes}",
           f"--node-rank={plan.node_rank}", f"--nproc-per-node={plan.nproc}",
           f"--master-addr={plan.master_addr}", f"--master-port={plan.master_port}",
           "--max-restarts=0", "-m", "tunewiz", "train", str(config), "--run-dir", str(run)]
    return cmd + (["--resume"] if resume else [])


def _env_int(env: str, value: str, lo: int, hi: int | None) -> int:
    """An override from the environment (XTuner's names), checked like the config's keys."""
    try:
        n = int(value.strip())
    except ValueError:
        n = None
    if n is None or n < lo or (hi is not None and n > hi):
        want = f"a whole number {lo}..{hi}" if hi is not None else f"a whole number of at least {lo}"
        raise ConfigError(f"{env}={shown(value)} in the environment is not {want}", f"unset {env} or fix it")
    return n


def _env_addr(env: str, value: str) -> str:
    if any(c.isspace() for c in value):
        raise ConfigError(f"{env}={shown(value)} in the environment is not a host address", f"unset {env} or fix it")
    return value


def _arg(path: str) -> str:
    """A path as one shell word: quoted, and never read as an option."""
    return shlex.quote(f"./{path}" if path.startswith("-") else path)


def node_commands(config: str, plan: Plan) -> list[str]:
    """What to type on every node (same config file path on each)."""
    return [f"tunewiz train {_arg(config)} --node-rank {k}" for k in range(plan.nnodes)]


def _sbatch_word(value: str, key: str) -> str:
    """One argument of an #SBATCH line. sbatch reads these itself, not through a shell:
    double quotes group, a backslash escapes the next character, an unescaped # starts a
    comment, single quotes are plain characters, and nothing spans lines."""
    if any(c in value for c in "\n\r\0") or len(value) > 4000:
        raise ConfigError(f"{key}: {shown(value)} cannot be written into a Slurm script",
                          f"use a {key} without line breaks, at most 4000 characters")
    escaped = "".join("\\" + c if c in '\\"#' else c for c in value)
    return f'"{escaped}"'


def slurm_script(config: str, cfg: Config, plan: Plan) -> str:
    """An sbatch script: one task per node; srun starts `tunewiz train` with each node's rank.

    Every value from the config or the command line is quoted for where it lands (#SBATCH
    lines, the batch shell, the `bash -c` that srun runs), so a name or path with spaces,
    quotes or `$(...)` stays one literal value. The config and log paths are absolute: the
    job runs in whatever directory sbatch is called from."""
    check_name(cfg.name)
    gpus = f"#SBATCH --gpus-per-node={int(plan.nproc)}\n" if plan.devices is not None else ""
    # %j is the job id; a % of the folder's own name is written %% (Slurm's filename patterns).
    log = _sbatch_word(f"{os.path.abspath(cfg.output_dir).replace('%', '%%')}/slurm-%j.out", "output_dir")
    node = f"NODE_RANK=$SLURM_NODEID exec tunewiz train {_arg(os.path.abspath(config))}"
    return f"""#!/bin/bash
#SBATCH --job-name={_sbatch_word(cfg.name, "name")}
#SBATCH --nodes={int(plan.nnodes)}
#SBATCH --ntasks-per-node=1
{gpus}#SBATCH --output={log}

# Node 0 is the first host of the allocation; every node runs one tunewiz supervisor,
# which starts torchrun for its {int(plan.nproc)} local process(es).
export ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export PORT={int(plan.master_port)}
export NNODES=$SLURM_NNODES
srun --kill-on-bad-exit=1 bash -c {shlex.quote(node)}
"""


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


def supervise(cfg: Config, plan: Plan, run: Path, resume: bool) -> int:
    """Run torchrun for this node; the workers write events (rank 0) and per-rank logs."""
    if plan.nnodes > 1:
        wait_for_nodes(plan, run)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNEWIZ_JOIN_TIMEOUT_S": str(plan.join_timeout_s)}
    if plan.devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, plan.devices))
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    env.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = torchrun_command(plan, run / rundir.CONFIG, run, resume)
    print(f"launching {plan.world_size} processes ({plan.nnodes} node(s) x {plan.nproc}); "
          f"launcher output in {run / rundir.LOGS / 'launcher-torchrun.log'}", flush=True)
    # torchrun's own chatter (and its stack traces when a worker fails) goes to a file; the
    # terminal follows rank 0's log instead, and a failure ends with the run's error line.
    with open(run / rundir.LOGS / "launcher-torchrun.log", "ab") as log:
        log.write((" ".join(shlex.quote(c) for c in cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
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
