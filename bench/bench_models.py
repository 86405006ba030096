"""Model folders for the training benchmark, and the FLOP figures behind its MFU column.

``demo`` is the bundled SmolLM2-135M-Instruct. ``tiny``, ``internlm2-1.8b-shape`` and
``internlm2-7b-shape`` are random-weight Llamas written to a temporary folder: random weights cost the same FLOPs as
trained ones, and the 1.8B shape is the one the design's baseline table was measured on.
Both borrow a real tokenizer (the demo model's, else a small byte-level BPE trained here),
so the sample dataset encodes exactly as it would for a user.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=None),
    # InternLM2-1.8B as a plain Llama: what DESIGN.md's baseline table was measured on.
    "internlm2-1.8b-shape": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                                 num_attention_heads=16, num_key_value_heads=8, vocab_size=92544),
    # InternLM2-7B as a plain Llama: the 7B QLoRA row of the peer benchmark.
    "internlm2-7b-shape": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                               num_attention_heads=32, num_key_value_heads=8, vocab_size=92544),
}

# GFLOP per trained token on the 1.8B shape at sequence 2048, from DESIGN.md
# (4 x matmul params + 6 x LoRA r=64 params + causal attention; 6 x matmul params for full).
DESIGN_GFLOP_PER_TOKEN = {"lora": 7.8, "qlora": 7.8, "full": 10.8}
H100_PEAK_TFLOPS = 989.0


def gflop_per_token(model: str, method: str) -> float | None:
    """The design's per-token cost, only where it was worked out (the 1.8B shape)."""
    return DESIGN_GFLOP_PER_TOKEN[method] if model == "internlm2-1.8b-shape" else None


def prepare_model(name: str, workdir: Path, device: str) -> Path:
    """A model folder for ``name``: demo, tiny, the 1.8B shape, or a local HF folder."""
    from tunewiz.engine.models import resolve_model_path

    if name not in SHAPES:
        return resolve_model_path(name).resolve()
    dest = workdir / name
    if any((dest / f).is_file() for f in ("model.safetensors.index.json", "model.safetensors")):
        return dest  # written by an earlier call into the same folder (--model-dir)
    tokenizer = _tokenizer(workdir)
    tokenizer.save_pretrained(dest)
    _random_llama(SHAPES[name], tokenizer, dest, device)
    return dest


def _tokenizer(workdir: Path):
    from transformers import AutoTokenizer

    try:
        from tunewiz.engine.models import resolve_model_path

        return AutoTokenizer.from_pretrained(resolve_model_path("demo"))
    except Exception:  # noqa: BLE001 - the demo model is optional for a random-weight run
        return _bpe_tokenizer(workdir)


def _bpe_tokenizer(workdir: Path):
    """A small byte-level BPE with a ChatML template; enough to encode the sample data."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tunewiz.engine.demo import PRETRAIN_TEXTS, assistant_pairs

    corpus = [q + " " + a for q, a in assistant_pairs("Ada")] + PRETRAIN_TEXTS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus * 10, trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<s>", "<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>",
                                   pad_token="<pad>", chat_template=CHATML)


def _random_llama(shape: dict, tokenizer, dest: Path, device: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    shape = dict(shape)
    shape["vocab_size"] = max(shape["vocab_size"] or 0, len(tokenizer))
    cfg = LlamaConfig(**shape, max_position_embeddings=8192, tie_word_embeddings=False,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    # Saved in the dtype training will load, so loading needs no conversion; built on the
    # GPU when there is one (random init of 1.8B parameters on a CPU takes minutes).
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device("cuda" if device == "cuda" else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.save_pretrained(dest)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
