"""How a run spreads over processes and nodes, planned without torch.

How many processes this node runs (``layout.gpus``, or XTuner's NPROC_PER_NODE on a
CPU-only machine), which node this is, and the exact commands for every node and for
Slurm. The wizard shows these plans; engine/distributed.py launches them.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from .config import Config, LayoutConfig, check_name, check_node_rank, shown
from .errors import ConfigError
from .gpus import Gpu, visible_gpus

# XTuner's environment variables, accepted as overrides of the config's layout.
ENV_OVERRIDES = {"NNODES": "nnodes", "NODE_RANK": "node_rank", "ADDR": "master_addr", "PORT": "master_port"}


@dataclass
class Plan:
    nproc: int                  # processes on this node
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    devices: list[int] | None   # GPU ids (nvidia-smi's) this node uses; None on CPU
    join_timeout_s: int
    cuda_visible: str | None = None   # CUDA_VISIBLE_DEVICES for this node's processes

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    @property
    def needs_launcher(self) -> bool:
        return self.world_size > 1


def make_plan(cfg: Config, node_rank: int | None = None, launching: bool = True) -> Plan:
    """This node's share of the layout. launching=False only plans (node commands, Slurm
    scripts), which a CPU-only login node must be able to do for a GPU cluster: then a GPU
    count or list in the config is taken as it is, and only gpus: all asks this machine."""
    layout = cfg.layout
    for env, key in ENV_OVERRIDES.items():
        if os.environ.get(env):
            value = os.environ[env]
            setattr(layout, key, _env_addr(env, value) if key == "master_addr" else
                    _env_int(env, value, 0 if key == "node_rank" else 1, 65535 if key == "master_port" else None))
    if node_rank is not None:
        layout.node_rank = node_rank
    check_node_rank(layout.node_rank, layout.nnodes, "node rank", "give --node-rank between 0 and layout.nnodes - 1")
    env_nproc = os.environ.get("NPROC_PER_NODE")
    if env_nproc:
        env_nproc = str(_env_int("NPROC_PER_NODE", env_nproc, 1, None))
    cuda_visible = None
    if not launching and layout.gpus != "all":
        # Planning for the nodes that will run it (node commands, a Slurm script): a count or
        # a list in the config says what each node uses. This machine's GPUs say nothing about
        # them; a login node often has none. Each node checks its own GPUs when it launches.
        wanted = list(range(layout.gpus)) if isinstance(layout.gpus, int) else list(layout.gpus)
        nproc = int(env_nproc) if env_nproc else len(wanted)
        return _plan(layout, nproc, wanted[:nproc], None)
    visible = visible_gpus()
    if visible:
        chosen = chosen_gpus(layout.gpus, visible)
        nproc = int(env_nproc) if env_nproc else len(chosen)
        chosen = chosen[:nproc]
        devices, cuda_visible = [g.index for g in chosen], ",".join(g.cuda_id for g in chosen)
    else:
        # CPU-only: one process unless asked for more (gloo); useful for tests and laptops.
        devices, nproc = None, int(env_nproc) if env_nproc else 1
    if launching and cfg.layout.uses_deepspeed and not visible:
        raise ConfigError(f"layout.deepspeed: {cfg.layout.deepspeed} needs CUDA GPUs and none is visible",
                          "set layout.deepspeed: none on this machine")
    return _plan(layout, nproc, devices, cuda_visible)


def _plan(layout: LayoutConfig, nproc: int, devices: list[int] | None, cuda_visible: str | None) -> Plan:
    return Plan(nproc=nproc, nnodes=layout.nnodes, node_rank=layout.node_rank, master_addr=str(layout.master_addr),
                master_port=int(layout.master_port), devices=devices, join_timeout_s=layout.join_timeout_s,
                cuda_visible=cuda_visible)


def chosen_gpus(wanted: str | int | list[int], visible: list[Gpu]) -> list[Gpu]:
    """The visible GPUs that layout.gpus picks (all, the first N, or these ids)."""
    ids = [g.index for g in visible]
    if wanted == "all":
        return list(visible)
    if isinstance(wanted, int):
        if wanted > len(visible):
            raise ConfigError(f"layout.gpus: {wanted} GPUs asked, {len(visible)} visible",
                              f"set layout.gpus to at most {len(visible)} or all")
        return visible[:wanted]
    missing = [g for g in wanted if g not in ids]
    if missing:
        raise ConfigError(f"layout.gpus: GPU {missing[0]} is not visible (visible: {ids})",
                          "list visible GPU ids, or use all")
    return [visible[ids.index(g)] for g in wanted]


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
