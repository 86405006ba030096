"""`tunewiz export [RUN]`: a finished run -> the model to chat with, in the run's folder.

Runs the run's output plan (engine/contract/rundir.output_plan), the same steps as the
TUI's Convert & merge: `convert RUN RUN/adapter` then `merge BASE RUN/adapter RUN/merged`
(full fine-tuning: `convert RUN RUN/hf`). Each step writes its folder atomically and only
replaces a folder an earlier export of this run wrote, so running it again is safe.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("export", help="finished run -> merged model (convert, then merge)",
                       description="Convert the run's newest checkpoint and merge it into its base model, "
                                   "into RUN/adapter and RUN/merged (RUN/hf for full fine-tuning). "
                                   "`tunewiz chat` then loads the result.")
    s.add_argument("run", nargs="?", help="run directory or name (default: the newest)")
    s.add_argument("--output-dir", default=argparse.SUPPRESS, help="folder with the runs (default: work_dirs)")
    s.add_argument("--print", action="store_true", dest="print_only",
                   help="print the commands instead of running them")
    return s


def run(args) -> int:
    import shlex

    from tunewiz.engine.contract import rundir
    from tunewiz.engine.contract.errors import TunewizError

    run_dir = rundir.require_run(args.run, args.output_dir)
    steps = rundir.output_plan(run_dir)
    if args.print_only:
        for argv in steps:
            print(shlex.join(["tunewiz", *argv]))
        return 0
    status = rundir.run_info(run_dir).status
    if status not in rundir.CONVERTIBLE:
        raise TunewizError(f"{run_dir.name} is {status}, not finished",
                           f"wait for it (or `tunewiz stop {run_dir.name}`); `tunewiz convert {run_dir} OUT` "
                           "converts its newest checkpoint as it is")
    say = lambda m: print(m, flush=True)  # noqa: E731
    for k, argv in enumerate(steps, 1):
        say(f"[{k}/{len(steps)}] tunewiz {shlex.join(argv)}")
        if argv[0] == "convert":
            from tunewiz.engine.convert import convert_checkpoint

            convert_checkpoint(Path(argv[1]), Path(argv[2]), say=say)
        else:
            from tunewiz.engine.merge import merge_adapter

            merge_adapter(argv[1], Path(argv[2]), Path(argv[3]), say=say)
    model = rundir.chat_model(run_dir)
    say(f"ready: {model}\nchat with it: tunewiz chat {shlex.quote(str(model))}")
    return 0
