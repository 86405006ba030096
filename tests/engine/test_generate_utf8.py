"""An answer cut by max_new_tokens in the middle of a multi-byte character never ends in "�".

The tiny tokenizer is byte-level BPE: a character it was not trained on (an emoji, a rare
CJK character) is several byte tokens, so the last tokens of a cut answer can be a
character's first bytes only.
"""

from __future__ import annotations

import pytest

from tunewiz.engine.generate import IncrementalDecoder, stream_reply


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.mark.parametrize("text", ["Hello 🙂", "龍", "你好"])
def test_a_cut_character_is_dropped_at_the_end(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    whole = text[:-1]
    # Every cut inside the last character: what was whole before it, and no "�".
    cuts = [k for k in range(1, len(ids)) if tok.decode(ids[:k]).endswith("\ufffd")]
    assert cuts, "the last character must span several byte tokens"
    for k in cuts:
        dec = IncrementalDecoder(tok)
        shown = "".join(dec.push(i) for i in ids[:k]) + dec.flush()
        assert shown == whole


def test_stream_reply_cut_mid_character_shows_no_partial_one(tiny_model, tok):
    import torch
    from transformers import AutoModelForCausalLM

    prompt = tok("Hello", add_special_tokens=False)["input_ids"]
    char = tok(" 龍", add_special_tokens=False)["input_ids"]   # a space, then three byte tokens
    chain = prompt[-1:] + char
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    # Make greedy decoding walk the chain: each token's output row points at the next one.
    with torch.no_grad():
        model.lm_head.weight.zero_()
        emb = model.model.embed_tokens.weight
        for this, following in zip(chain, chain[1:]):
            model.lm_head.weight[following] = emb[this] * 1000
    assert "".join(stream_reply(model, tok, prompt, max_new_tokens=len(char))) == " 龍"
    for cut in range(2, len(char)):   # after the space, inside the character
        assert "".join(stream_reply(model, tok, prompt, max_new_tokens=cut)) == " "
