"""Loading a model (and optionally a LoRA adapter on top) for chatting or merging.

Chat and merge share the checks that turn a wrong path into a one-line ModelError: the
base resolves through ``models.resolve_model_path`` (so "demo" works), and an adapter
folder must hold ``adapter_config.json``. torch / transformers / peft load lazily.
"""

from __future__ import annotations

import json
from pathlib import Path

from .contract.errors import ModelError
from .contract.output_folder import read_meta

ADAPTER_CONFIG = "adapter_config.json"


def pick_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda, but no CUDA GPU is available", "use --device cpu (or auto)")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def adapter_kind(folder: Path) -> str:
    """"lora" for a peft adapter folder, "full" for a complete HF model; ModelError otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"adapter folder {folder} does not exist",
                         "give the folder written by `tunewiz convert`")
    if (folder / ADAPTER_CONFIG).is_file():
        return "lora"
    if (folder / "config.json").is_file():
        return "full"
    raise ModelError(f"{folder} holds no adapter ({ADAPTER_CONFIG}) and no model (config.json)",
                     "give the folder written by `tunewiz convert`")


def saved_dtype_name(path: Path) -> str:
    """The dtype a model folder was saved in, as bf16 / fp16 / fp32 (fp32 when unknown)."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return "fp32"
    name = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    return {"bfloat16": "bf16", "float16": "fp16"}.get(name, "fp32")


def load_tokenizer_for(base: Path, adapter: Path | None):
    """The adapter folder's tokenizer when it carries one, else the base model's."""
    from .models import load_tokenizer

    if adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file():
        return load_tokenizer(Path(adapter))
    return load_tokenizer(base)


def load_causal_lm(path: Path, dtype, device: str, bits: int | None = None):
    """A causal LM in eval mode on device; bits=4/8 loads it quantized (CUDA + bitsandbytes)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": dtype}
    if bits:
        if not device.startswith("cuda"):
            raise ModelError(f"--bits {bits} needs a CUDA GPU and none is available",
                             "drop --bits to load the model in full precision")
        from .contract.config import QuantConfig
        from .models import quant_config

        kwargs["quantization_config"] = quant_config(QuantConfig(bits=bits), dtype)
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot load the model ({str(e).splitlines()[0]})",
                         "check that the folder is a complete Hugging Face causal LM") from None
    if not bits:
        model.to(device)
    return model.eval()


def attach_adapter(model, adapter: Path):
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter)).eval()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelError(f"{adapter}: cannot apply the adapter to this base ({str(e).splitlines()[0]})",
                         "use the base model the adapter was trained on (see its tunewiz.json)") from None


def adapter_meta(model_dir: Path, adapter: Path | None) -> dict:
    """tunewiz.json of the adapter, else of the model folder (a merged model carries one)."""
    meta = read_meta(adapter) if adapter is not None else {}
    return meta or read_meta(model_dir)
