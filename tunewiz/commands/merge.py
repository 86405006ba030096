"""`tunewiz merge BASE ADAPTER OUT`: merge a LoRA adapter into its base model."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from tunewiz.engine.contract.config import Device, Dtype


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("merge", help="merge an adapter into its base model",
                       description="Write BASE with ADAPTER folded into its weights to OUT (a new folder, "
                                   "or one an earlier merge wrote): a plain Hugging Face model with its "
                                   "tokenizer and the chat template it was trained with.")
    s.add_argument("base", metavar="BASE", help='base model folder, or "demo"')
    s.add_argument("adapter", metavar="ADAPTER", help="adapter folder (from `tunewiz convert`)")
    s.add_argument("out", metavar="OUT", help="folder to write")
    s.add_argument("--max-shard-size", default="2GB", help="largest safetensors shard (default 2GB)")
    s.add_argument("--device", default="auto", choices=typing.get_args(Device))
    s.add_argument("--dtype", default="auto", choices=typing.get_args(Dtype))
    return s


def run(args) -> int:
    from tunewiz.engine.merge import merge_adapter

    merge_adapter(args.base, Path(args.adapter), Path(args.out), max_shard_size=args.max_shard_size,
                  device=args.device, dtype=args.dtype, say=lambda m: print(m, flush=True))
    return 0
