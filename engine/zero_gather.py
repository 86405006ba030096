"""ZeRO-3 checkpoints -> ordinary Hugging Face weights, for `tunewiz convert`.

Under ZeRO-3 no rank holds whole weights, so training saves DeepSpeed's sharded state
and nothing else (gathering every checkpoint would cost the run time and GPU memory).
Convert gathers the shards offline on the CPU with DeepSpeed's own reader, puts them
into the model the run trained (base + LoRA, or the full model) and saves that with
``save_pretrained``, so the rest of convert treats it like any other checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from .contract.errors import ModelError


def is_zero3(ckpt: Path) -> bool:
    marker = ckpt / "zero.json"
    return marker.is_file() and json.loads(marker.read_text()).get("stage") == 3


def gather_zero3(ckpt: Path, cfg, dest: Path, say=print) -> Path:
    """Write save_pretrained weights of the ZeRO-3 checkpoint ckpt into dest."""
    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError:
        raise ModelError(f"{ckpt} is a sharded ZeRO-3 checkpoint and gathering it needs deepspeed",
                         "pip install deepspeed (no GPU needed to convert)") from None
    import torch
    from transformers import AutoModelForCausalLM

    from .models import lora_config, resolve_model_path

    tag = json.loads((ckpt / "zero.json").read_text()).get("tag", "state")
    say(f"convert: gathering ZeRO-3 shards of {ckpt.name}")
    state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt / "ds"), tag=tag)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.model.path), dtype=torch.float32,
                                                trust_remote_code=cfg.model.trust_remote_code)
    if not cfg.uses_adapter:
        model = base
        wanted = set(model.state_dict())
    else:
        from peft import get_peft_model

        model = get_peft_model(base, lora_config(cfg))
        wanted = {k for k in model.state_dict() if "lora_" in k}
    got = {k: v for k, v in state.items() if k in wanted}
    missing = [k for k in wanted if k not in got and not k.endswith("lm_head.weight")]
    if missing:
        raise ModelError(f"{ckpt}: the ZeRO-3 shards lack {len(missing)} tensors (e.g. {missing[0]})",
                         "the checkpoint is incomplete; try an older step-N")
    model.load_state_dict(got, strict=False)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    say(f"convert: gathered {len(got)} tensors")
    return dest
