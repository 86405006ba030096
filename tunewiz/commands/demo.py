"""`tunewiz demo`: the bundled demo model (converted once) and the sample datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

STEPS = {1: "tokenizer read", 2: "weights dequantized", 3: "safetensors written", 4: "checked"}


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("demo", help="prepare the bundled demo model and sample datasets",
                       description="Convert the bundled SmolLM2-135M-Instruct (once, into the tunewiz cache) "
                                   "and write the sample datasets. Files you changed are never overwritten: "
                                   "a sample goes beside them instead.")
    s.add_argument("--dest", default="data", help="folder for the sample datasets (default: data)")
    s.add_argument("--name", default="tunewiz", help="the assistant's owner in the sample set")
    s.add_argument("--quiet", action="store_true", help="print only notes about files left alone")
    return s


def run(args) -> int:
    from tunewiz.engine import demo

    say = (lambda *a, **k: None) if args.quiet else print

    def progress(phase: str, done: int, total: int) -> None:
        if done:
            say(f"  [{done}/{total}] {STEPS.get(done, phase)}", flush=True)

    if not demo.demo_model_ready():
        say(f"converting the demo model {demo.DEMO_NAME} (once, about a minute)...", flush=True)
    model = demo.demo_model_path(progress)
    # Notes about files left alone are printed even with --quiet: the user should know
    # that their own data/assistant.json was kept and where the sample went instead.
    files = demo.write_sample_datasets(Path(args.dest), args.name, say=lambda m: print(m, flush=True))
    say(f"demo model:   {model}")
    say(f"assistant:    {files['conversation']}  (XTuner conversation format, {demo.ASSISTANT_RECORDS} records)")
    say(f"assistant:    {files['openai']}  (OpenAI messages format)")
    say(f"pretraining:  {files['pretrain']}  ({demo.PRETRAIN_RECORDS} records)")
    return 0
