"""Model folders holding only a config.json of a real model's sizes: all that the memory
estimate and the automatic batch read (the weights are never loaded)."""

from __future__ import annotations

import json
from pathlib import Path

# InternLM2 shapes as plain Llamas, as bench/bench_models.py writes them.
SHAPES = {
    "1.8b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=8, vocab_size=92544, tie_word_embeddings=False),
    "7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=92544, tie_word_embeddings=False),
    # SmolLM2-135M-Instruct, the demo model
    "demo": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}


def model_folder(root: Path, shape: str) -> Path:
    """A model folder with only its config.json."""
    folder = Path(root) / shape
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16", **SHAPES[shape]}))
    return folder
