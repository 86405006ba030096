"""What the wizard shows about a base model, read from its folder's JSON files (no torch)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEMO = "demo"
DEMO_LABEL = "demo: SmolLM2-135M-Instruct (bundled, CPU friendly)"


@dataclass
class ModelFacts:
    path: str
    architecture: str = "?"
    params: int | None = None
    dtype: str = "?"
    hidden: int = 0
    layers: int = 0
    vocab: int = 0
    intermediate: int = 0
    has_chat_template: bool | None = None
    needs_remote_code: bool = False
    problem: str = ""

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


def demo_folder() -> Path | None:
    """The converted demo model, when `tunewiz demo` has prepared it."""
    from tunewiz.engine.contract.cache_dirs import cache_root
    from tunewiz.engine.contract.samples import DEMO_NAME

    folder = cache_root() / "models" / DEMO_NAME
    return folder if (folder / "config.json").is_file() else None


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


def read_model_facts(path: str) -> ModelFacts:
    folder = demo_folder() if path == DEMO else Path(path).expanduser()
    if folder is None:
        return ModelFacts(path, architecture="LlamaForCausalLM", params=134_515_008, dtype="bfloat16",
                          hidden=576, layers=30, vocab=49152, intermediate=1536, has_chat_template=True)
    facts = ModelFacts(str(folder))
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        facts.problem = f"{folder}: no config.json here (not a Hugging Face model folder)"
        return facts
    except (OSError, ValueError) as e:
        facts.problem = f"{folder}/config.json: cannot read ({e})"
        return facts
    facts.architecture = ", ".join(cfg.get("architectures") or [cfg.get("model_type", "?")])
    facts.params = estimate_params(cfg)
    facts.dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "?")
    facts.hidden = cfg.get("hidden_size", 0)
    facts.layers = cfg.get("num_hidden_layers", 0)
    facts.vocab = cfg.get("vocab_size", 0)
    facts.intermediate = cfg.get("intermediate_size", 0)
    facts.needs_remote_code = "auto_map" in cfg
    facts.has_chat_template = _has_chat_template(folder)
    return facts


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def find_model_folders(extra_roots: list[Path] | None = None, limit: int = 50) -> list[Path]:
    """Local HF folders in the usual places: ./models, ~/models, the HF hub cache, ours."""
    home = Path.home()
    from tunewiz.engine.contract.cache_dirs import cache_root

    roots = [Path("models"), home / "models", cache_root() / "models", *(extra_roots or [])]
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found += [p.parent for p in sorted(root.glob("*/config.json"))]
    hub = Path(os.environ.get("HF_HOME", home / ".cache" / "huggingface")) / "hub"
    if hub.is_dir():
        found += [p.parent for p in sorted(hub.glob("models--*/snapshots/*/config.json"))]
    demo = demo_folder()
    unique = [p for p in dict.fromkeys(p.resolve() for p in found) if demo is None or p != demo.resolve()]
    return unique[:limit]
