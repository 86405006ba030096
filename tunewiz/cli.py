"""The command line: the headless twin of the wizard.

Each subcommand maps to one plain function, named as "module:function" and imported only
when that command runs, so `tunewiz --help` and the TUI never import torch. Errors a user
can cause (TunewizError) become one line on stderr and exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import os
import signal
import sys

from tunewiz.commands import prepare_data

# subcommand -> "module:function"; a test checks this map and the parser agree.
COMMANDS = {
    "runs": "tunewiz.engine.runs_cmd:cmd_runs",
    "attach": "tunewiz.tui.app:cmd_attach",
    "train": "tunewiz.engine.launch:cmd_train",
    "stop": "tunewiz.engine.launch:cmd_stop",
    "stacks": "tunewiz.engine.stacks:cmd_stacks",
    "presets": "tunewiz.engine.preset_catalog:cmd_presets",
    "check-data": "tunewiz.engine.check_data:cmd_check_data",
    "prepare-data": "tunewiz.commands.prepare_data:run",
    "convert": "tunewiz.engine.convert:cmd_convert",
    "merge": "tunewiz.engine.merge:cmd_merge",
    "chat": "tunewiz.engine.chat:cmd_chat",
    "demo": "tunewiz.engine.demo:cmd_demo",
}

EPILOG = """\
typical session:
  tunewiz demo                                   prepare the demo model and sample data
  tunewiz presets copy sft-lora my.yaml          start from a preset, edit it
  tunewiz check-data data/assistant.json --model demo
  tunewiz prepare-data my.yaml                   tokenize and cache the data (optional)
  tunewiz train my.yaml --detach                 train in the background
  tunewiz attach                                 watch the newest run
  tunewiz convert work_dirs/RUN adapter/         checkpoint -> HF adapter
  tunewiz merge demo adapter/ merged/            adapter + base -> HF model
  tunewiz chat merged/                           talk to it
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tunewiz", description="Fine-tune LLMs from the terminal. With no command, opens the wizard.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--output-dir", default=None, help="folder with the runs (default: work_dirs)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("runs", help="list runs with status, step/total, last loss")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")

    s = sub.add_parser("attach", help="monitor a run (default: the newest)")
    s.add_argument("run", nargs="?", help="run directory or name")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")

    s = sub.add_parser("train", help="train from a config (or resume a run)",
                       description="Train from a YAML config. Writes a new run directory under output_dir.")
    s.add_argument("config", help="config YAML, or a run directory with --resume")
    s.add_argument("--detach", action="store_true", help="return at once; the run continues in its own session")
    s.add_argument("--resume", action="store_true", help="continue the newest checkpoint of the run (or of the newest run of this config)")
    s.add_argument("--node-rank", type=int, default=None, help="this node's rank in a multi-node run")
    s.add_argument("--print-node-commands", action="store_true", help="print the command to run on every node and exit")
    s.add_argument("--slurm", metavar="FILE", nargs="?", const="-", default=None,
                   help="write an sbatch script that starts every node with srun (to FILE, or stdout)")
    s.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)  # set by --detach / torchrun

    s = sub.add_parser("stop", help="stop a run gracefully: checkpoint, then exit")
    s.add_argument("run", nargs="?", help="run directory or name (default: the newest)")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")
    s.add_argument("--wait", action="store_true", help="wait until the run has exited")

    s = sub.add_parser("stacks", help="print what every process of a running run is doing (Python stacks)",
                       description="Signal the run's processes on this machine (SIGUSR1: each prints its "
                                   "threads' Python stacks to its log and carries on) and show the stacks. "
                                   "For a run that seems stuck.")
    s.add_argument("run", nargs="?", help="run directory or name (default: the newest)")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")
    s.add_argument("--wait", type=float, default=1.0, help="seconds to let the processes write (default 1)")

    s = sub.add_parser("presets", help="list or copy ready-made configs")
    ps = s.add_subparsers(dest="action", metavar="ACTION", required=True)
    pl = ps.add_parser("list", help="list presets")
    pl.add_argument("-p", "--pattern", default=None, help="only presets whose name contains this")
    pc = ps.add_parser("copy", help="copy a preset to edit it")
    pc.add_argument("name")
    pc.add_argument("dest")

    s = sub.add_parser("check-data", help="validate a dataset and show what the model will see")
    s.add_argument("files", nargs="+", metavar="SOURCE",
                   help="data files (JSON, JSONL, Parquet, Arrow, CSV, TSV), save_to_disk folders, folders of "
                        "data files, or hub dataset ids (owner/name[/config][:split])")
    s.add_argument("--format", default="auto", help="auto | pretrain | conversation | alpaca | openai | sharegpt")
    s.add_argument("--model", default="demo", help='tokenizer to count with ("demo" or a local folder)')
    s.add_argument("--template", default="auto", help="auto (the tokenizer's chat template) or a named template")
    s.add_argument("--max-length", type=int, default=2048, help="sequence length to check truncation against")
    s.add_argument("--system", default="", help="system prompt added where a sample has none")
    s.add_argument("--stage", default=None, choices=["sft", "pretrain"], help="default: pretrain for text data, else sft")
    s.add_argument("--json", action="store_true", help="print the report as one JSON object (spans of the first sample)")

    prepare_data.add_parser(sub)

    s = sub.add_parser("convert", help="checkpoint -> Hugging Face adapter (or HF weights for full)")
    s.add_argument("src", metavar="RUN|CHECKPOINT")
    s.add_argument("out", metavar="OUT")

    s = sub.add_parser("merge", help="merge an adapter into its base model")
    s.add_argument("base", metavar="BASE")
    s.add_argument("adapter", metavar="ADAPTER")
    s.add_argument("out", metavar="OUT")
    s.add_argument("--max-shard-size", default="2GB")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])

    s = sub.add_parser("chat", help="chat with a model in the terminal")
    s.add_argument("model", metavar="MODEL")
    s.add_argument("--adapter", default=None)
    s.add_argument("--template", default=None, help="default: the one saved with the adapter, else the tokenizer's")
    s.add_argument("--system", default=None)
    s.add_argument("--bits", type=int, choices=[4, 8], default=None, help="load the base quantized (CUDA)")
    s.add_argument("--prompt", default=None, help="answer once and exit")
    s.add_argument("--max-new-tokens", type=int, default=256)
    s.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    s.add_argument("--top-p", type=float, default=0.9)
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    s = sub.add_parser("demo", help="prepare the bundled demo model and sample datasets")
    s.add_argument("--dest", default="data", help="folder for the sample datasets")
    s.add_argument("--name", default="tunewiz", help="the assistant's owner in the sample set")
    s.add_argument("--quiet", action="store_true")
    return p


def _version() -> str:
    from tunewiz import __version__
    return f"tunewiz {__version__}"


def _load(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    # `kill -USR1 PID` prints every thread's Python stack to stderr (for a training rank,
    # its log) and carries on: the first thing to look at when a run seems stuck.
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (OSError, ValueError, AttributeError):  # stderr is no real file (captured, embedded)
        pass
    args = build_parser().parse_args(argv)
    if getattr(args, "output_dir", None) is None:
        args.output_dir = os.environ.get("TUNEWIZ_OUTPUT_DIR", "work_dirs")
    from tunewiz.engine.contract.errors import TunewizError

    try:
        if args.command is None:
            return _load("tunewiz.tui.app:cmd_app")(args) or 0
        return _load(COMMANDS[args.command])(args) or 0
    except TunewizError as e:
        print(f"tunewiz: error: {e.one_line()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tunewiz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
