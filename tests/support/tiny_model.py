"""A tiny random Llama with a locally trained byte-level BPE tokenizer.

Built once per session in a few seconds (well under 1 MB), so the fast tier never needs a
hub or the demo model. The tokenizer carries a ChatML chat template and the special tokens
that the named templates use, so every template can be exercised on it.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
           "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|begin_of_text|>"]
CORPUS = [
    "Hello, I am the assistant of tunewiz. I am happy to help you.",
    "Please introduce yourself. Who are you? What can you do?",
    "我是小助手，很高兴为你服务。请介绍一下你自己。",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "system user assistant Bot User System: <|> {} [] () ... ,;",
] * 20


def build_tiny_model(dest: Path, **shape) -> Path:
    """The tiny model; `shape` overrides LlamaConfig fields for bigger test models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    import torch

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>",
                                     pad_token="<pad>", chat_template=CHATML)
    hf_tok.save_pretrained(dest)

    torch.manual_seed(0)
    dims = dict(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    dims.update(shape)
    shape = {}
    cfg = LlamaConfig(**dims,
                      bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                      pad_token_id=hf_tok.pad_token_id, tie_word_embeddings=False, **shape)
    LlamaForCausalLM(cfg).save_pretrained(dest)
    return dest
