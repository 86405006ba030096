"""`tunewiz train CONFIG`: train from a config, resume a run, or print how to start every node."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("train", help="train from a config (or resume a run)",
                       description="Train from a YAML config. Writes a new run directory under output_dir "
                                   "(never touches an earlier run); --resume continues a run from its "
                                   "newest checkpoint.")
    s.add_argument("config", help="config YAML, or a run directory with --resume")
    s.add_argument("--detach", action="store_true", help="return at once; the run continues in its own session")
    s.add_argument("--resume", action="store_true",
                   help="continue the newest checkpoint of the run (or of the newest run of this config)")
    s.add_argument("--node-rank", type=int, default=None, help="this node's rank in a multi-node run")
    s.add_argument("--print-node-commands", action="store_true",
                   help="print the command to run on every node and exit")
    s.add_argument("--slurm", metavar="FILE", nargs="?", const="-", default=None,
                   help="write an sbatch script that starts every node with srun (to FILE, or stdout)")
    s.add_argument("--dry-run", action="store_true",
                   help="check the config, print the plan and the memory each GPU (or the CPU) needs, and exit: "
                        "1 with the setting to change when it will not fit; writes and tokenizes nothing")
    s.add_argument("--gpu-memory", type=float, metavar="GIB", default=None,
                   help="with --dry-run: check against GPUs of this size (planning on a machine without them)")
    return s


def run(args) -> int:
    if args.dry_run:
        from tunewiz.engine.dry_run import dry_run

        return dry_run(args.config, node_rank=args.node_rank, gpu_memory_gib=args.gpu_memory,
                       say=lambda m: print(m, flush=True))
    if args.gpu_memory is not None:
        from tunewiz.engine.contract.errors import ConfigError

        raise ConfigError("--gpu-memory applies to --dry-run only", "add --dry-run, or leave --gpu-memory out")
    if args.print_node_commands or args.slurm:
        return _print_launch_help(args)
    from tunewiz.engine.launch import start_training

    return start_training(args.config, resume=args.resume, detach=args.detach, node_rank=args.node_rank,
                          output_dir=args.output_dir, say=lambda m: print(m, flush=True))


def _print_launch_help(args) -> int:
    from tunewiz.engine.contract.config import load_config, shown
    from tunewiz.engine.contract.errors import ConfigError
    from tunewiz.engine.distributed import make_plan, node_commands, slurm_script

    cfg = load_config(args.config)
    plan = make_plan(cfg, args.node_rank, launching=False)
    if args.slurm:
        script = slurm_script(args.config, cfg, plan)
        if args.slurm == "-":
            print(script, end="")
        else:
            try:
                Path(args.slurm).write_text(script)
            except OSError as e:
                raise ConfigError(f"--slurm {shown(args.slurm)}: cannot write the script ({e.strerror or e})",
                                  "give a file path in a folder you can write, or - to print it") from None
            print(f"wrote {args.slurm}; submit it with `sbatch {shlex.quote(args.slurm)}`")
        return 0
    print(f"# {plan.nnodes} node(s) x {plan.nproc} process(es); node 0 listens on "
          f"{plan.master_addr}:{plan.master_port}")
    for k, line in enumerate(node_commands(args.config, plan)):
        print(f"{line}    # on node {k}")
    return 0
