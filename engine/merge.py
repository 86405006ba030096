"""``tunewiz merge BASE ADAPTER OUT``: fold a LoRA adapter into its base model.

The base is always loaded unquantized, so a QLoRA adapter merges into full-precision
weights (merging into 4-bit weights would round the update away). The result is a plain
Hugging Face folder: sharded safetensors, tokenizer (loadable by transformers 4.x and 5.x),
a chat template, a README.md model card and tunewiz.json — loadable by
``AutoModelForCausalLM`` with nothing of tunewiz installed. An ADAPTER that is
already a full model (method full) is re-sharded and given the same extras.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

from .contract import model_card
from .contract.errors import ModelError
from .contract.output_folder import atomic_folder, check_replaceable, read_meta

Say = Callable[[str], None]


def merge_adapter(base_arg: str, adapter: Path, out: Path, max_shard_size: str = "2GB", device: str = "auto",
                  dtype: str = "auto", say: Say = print) -> Path:
    """Write base + adapter (or a full model, re-sharded) to out; returns out."""
    from .inference_model import (adapter_kind, attach_adapter, load_causal_lm, load_tokenizer_for,
                                  pick_device, saved_dtype_name)
    from .models import pick_dtype, resolve_model_path
    from .saved_tokenizer import save_tokenizer

    adapter = Path(adapter)
    kind = adapter_kind(adapter)
    base = resolve_model_path(base_arg)
    meta = read_meta(adapter)
    trained_on = meta.get("base_model")
    if kind == "lora" and trained_on and trained_on != base_arg and Path(trained_on) != base.resolve():
        say(f"merge: note: the adapter was trained on {trained_on}, merging into {base_arg}")

    source = adapter if kind == "full" else base
    identity = {"merged_base": str(base.resolve()), "merged_adapter": str(adapter.resolve())}

    out = Path(out)
    check_replaceable(out.absolute(), "merge", identity)  # fail before the slow imports and loads
    device = pick_device(device)
    torch_dtype = pick_dtype(saved_dtype_name(source) if dtype == "auto" else dtype, "cpu")
    new_meta = {**meta, "base_model": trained_on or base_arg, **identity}
    new_meta.setdefault("method", "full" if kind == "full" else "lora")

    with atomic_folder(out, "merge", identity, new_meta) as tmp, warnings.catch_warnings():
        # Library deprecation notes would sit above the one-line result or error on stderr.
        warnings.simplefilter("ignore", FutureWarning)
        say(f"merge: [1/3] loading {source} ({str(torch_dtype).replace('torch.', '')}, {device})")
        _quiet_transformers()
        tokenizer = load_tokenizer_for(base, adapter)
        model = load_causal_lm(source, torch_dtype, device)
        if kind == "lora":
            say(f"merge: [2/3] merging {adapter}")
            model = attach_adapter(model, adapter).merge_and_unload()
        else:
            say("merge: [2/3] full model, nothing to merge")
        say(f"merge: [3/3] saving to {out} (shards up to {max_shard_size})")
        try:
            model.save_pretrained(tmp, max_shard_size=max_shard_size, safe_serialization=True)
        except ValueError as e:
            raise ModelError(f"cannot save: {str(e).splitlines()[0]}", "check --max-shard-size, e.g. 2GB") from None
        same_template = save_tokenizer(tokenizer, tmp, meta.get("template"), meta.get("system") or "",
                                       lambda m: say(f"merge: {m}"))
        model_card.write(tmp, "full" if kind == "full" else "merged", {**new_meta, "merged_base": base_arg},
                         out.absolute(), same_template)
    say(f"merge: done -> {out}")
    return out


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our three lines say what is happening
