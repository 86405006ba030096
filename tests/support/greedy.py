"""The reference that chat answers are compared with: transformers' own greedy generate."""

from __future__ import annotations


def hf_greedy(model, tok, prompt_ids, n, eos):
    """transformers' greedy answer to prompt_ids, less the "�" that its decode shows for a
    character whose bytes the token limit cut off (chat drops those)."""
    import torch

    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, eos_token_id=eos,
                         pad_token_id=tok.pad_token_id)
    ids = out[0][len(prompt_ids):].tolist()
    ids = ids[:ids.index(eos)] if eos in ids else ids
    return tok.decode(ids, skip_special_tokens=True).rstrip("\ufffd")


def chat_prompt(tok, text):
    """The prompt chat mode gives the model: the tokenizer's own chat template."""
    from tunewiz.engine.encode import Encoder

    return Encoder(tok, "auto").prompt_ids([{"role": "user", "content": text}])
