"""`tunewiz convert RUN|CHECKPOINT OUT`: a checkpoint as a Hugging Face adapter (or model)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("convert", help="checkpoint -> Hugging Face adapter (or HF weights for full)",
                       description="Write the newest checkpoint of RUN (or the CHECKPOINT folder given) "
                                   "to OUT as a PEFT adapter (LoRA / QLoRA) or a Hugging Face model (full).")
    s.add_argument("src", metavar="RUN|CHECKPOINT", help="run directory or name, or a checkpoint folder")
    s.add_argument("out", metavar="OUT", help="folder to write")
    return s


def run(args) -> int:
    from tunewiz.engine.convert import convert_checkpoint

    convert_checkpoint(Path(args.src), Path(args.out), say=lambda m: print(m, flush=True))
    return 0
