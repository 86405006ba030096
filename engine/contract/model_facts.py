"""What a model folder's config.json says about the model, without loading it (no torch).

The wizard shows these facts and estimates memory from them; the engine checks a model with
them before a run (remote code, a causal LM). One reader, so both judge a folder alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import ModelError

# Heads that make a model generate text: what fine-tuning here can train.
CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


@dataclass
class ModelFacts:
    path: str
    architecture: str = "?"             # the architectures config.json names, comma-separated
    model_type: str = "?"
    params: int | None = None           # estimated from the sizes; None when they are missing
    dtype: str = "?"
    hidden: int = 0
    layers: int = 0
    vocab: int = 0
    intermediate: int = 0
    has_chat_template: bool | None = None
    needs_remote_code: bool = False
    is_causal_lm: bool = False
    config: dict = field(default_factory=dict, repr=False)
    problem: str = ""                   # why nothing else is known (the wizard shows it)

    def describe(self) -> str:
        if self.problem:
            return self.problem
        lines = [f"architecture  {self.architecture}",
                 f"parameters    {human_count(self.params)}",
                 f"dtype         {self.dtype}",
                 f"chat template {'yes' if self.has_chat_template else 'no (pick a named template)'}"]
        if self.needs_remote_code:
            lines.append("remote code   needed: the folder ships its own Python")
        return "\n".join(lines)


def human_count(n: int | None) -> str:
    if not n:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def estimate_params(cfg: dict) -> int | None:
    """Parameter count of a decoder-only transformer from its config (embeddings included)."""
    hidden = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model")
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layer")
    vocab = cfg.get("vocab_size")
    if not (hidden and layers and vocab):
        return None
    inter = cfg.get("intermediate_size") or 4 * hidden
    heads = cfg.get("num_attention_heads") or 1
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    attn = hidden * head_dim * heads * 2 + hidden * head_dim * kv_heads * 2
    mlp = 3 * hidden * inter
    embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    return layers * (attn + mlp) + embeddings


def read_model_facts(folder: Path, known_model_type: Callable[[str], bool] | None = None) -> ModelFacts:
    """The facts of the model in folder; ModelError when it has no readable config.json.

    Code shipped in the folder (config.json's auto_map) is needed for the model itself, or
    for a model_type that known_model_type does not know; without that test any auto_map
    counts (the wizard cannot ask transformers, and over-warning there is harmless)."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise ModelError(f"{folder}: no config.json here (not a Hugging Face model folder)",
                         "choose a folder that holds a model's config.json") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{folder / 'config.json'}: cannot read ({e})", "check the model folder") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{folder / 'config.json'}: not a JSON object", "check the model folder")
    archs = [str(a) for a in cfg.get("architectures") or []]
    model_type = str(cfg.get("model_type", "?"))
    auto_map = cfg.get("auto_map") or {}
    known = known_model_type(model_type) if known_model_type else False
    return ModelFacts(
        path=str(folder), architecture=", ".join(archs or [model_type]), model_type=model_type,
        params=estimate_params(cfg), dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "?"),
        hidden=cfg.get("hidden_size", 0), layers=cfg.get("num_hidden_layers", 0), vocab=cfg.get("vocab_size", 0),
        intermediate=cfg.get("intermediate_size", 0), has_chat_template=_has_chat_template(folder),
        needs_remote_code="AutoModelForCausalLM" in auto_map or (bool(auto_map) and not known),
        is_causal_lm=any(a.endswith(CAUSAL_HEADS) for a in archs) or "AutoModelForCausalLM" in auto_map,
        config=cfg)


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False
