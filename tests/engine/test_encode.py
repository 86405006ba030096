"""Tokenization and loss masks, token by token, for named and auto templates."""

from __future__ import annotations


import pytest

from tunewiz.engine.encode import IGNORE, Encoder
from tunewiz.engine.contract.errors import ConfigError, DataError
from tunewiz.engine.contract.formats import Sample

SYSTEM = "You are a helpful assistant."
U1, A1 = "Please introduce yourself", "I am the assistant of tunewiz."
U2, A2 = "Who are you?", "I am happy to help you."
MULTI = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": U1},
         {"role": "assistant", "content": A1}, {"role": "user", "content": U2},
         {"role": "assistant", "content": A2}]


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def chat(messages, source="t.json:1"):
    return Sample(source, messages=messages)


def enc(tok, text):
    return tok.encode(text, add_special_tokens=False)


def trained_text(tok, e):
    return tok.decode([i for i, l in zip(e.input_ids, e.labels) if l != IGNORE])


def test_internlm2_chat_multi_turn_matches_xtuner(tok):
    e = Encoder(tok, template="internlm2_chat").encode(chat(MULTI))
    # XTuner: turn 1 = [BOS] SYSTEM + INSTRUCTION, [output + SUFFIX], SEP; turn 2 = INSTRUCTION,
    # [output + SUFFIX], SEP. SUFFIX_AS_EOS: no EOS token and no BOS before turn 2.
    expected_text = (
        "<s>"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nPlease introduce yourself<|im_end|>\n"
        "<|im_start|>assistant\n"
        "I am the assistant of tunewiz.<|im_end|>"
        "\n"
        "<|im_start|>user\nWho are you?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "I am happy to help you.<|im_end|>"
        "\n"
    )
    ids, labels = [tok.bos_token_id], [IGNORE]
    for piece, trained in [
        ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
         "<|im_start|>user\nPlease introduce yourself<|im_end|>\n<|im_start|>assistant\n", False),
        ("I am the assistant of tunewiz.<|im_end|>", True),
        ("\n", False),
        ("<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n", False),
        ("I am happy to help you.<|im_end|>", True),
        ("\n", False),
    ]:
        piece_ids = enc(tok, piece)
        ids += piece_ids
        labels += piece_ids if trained else [IGNORE] * len(piece_ids)
    assert tok.decode(e.input_ids) == expected_text
    assert e.input_ids == ids
    assert e.labels == labels
    assert not e.truncated
    assert trained_text(tok, e) == A1 + "<|im_end|>" + A2 + "<|im_end|>"


def test_default_template_trains_eos_and_restarts_with_bos(tok):
    e = Encoder(tok, template="default").encode(chat(MULTI[1:]))
    bos, eos = tok.bos_token_id, tok.eos_token_id
    turn1 = [bos] + enc(tok, f"<|User|>:{U1}\n<|Bot|>:")
    ans1 = enc(tok, A1) + [eos]
    turn2 = [bos] + enc(tok, f"<|User|>:{U2}\n<|Bot|>:")
    ans2 = enc(tok, A2) + [eos]
    sep = enc(tok, "\n")
    assert e.input_ids == turn1 + ans1 + sep + turn2 + ans2 + sep
    assert e.labels == [IGNORE] * len(turn1) + ans1 + [IGNORE] * len(sep + turn2) + ans2 + [IGNORE] * len(sep)


def test_llama3_chat_has_no_sep(tok):
    e = Encoder(tok, template="llama3_chat", system="Be brief.").encode(chat(MULTI[1:3]))
    assert tok.decode(e.input_ids) == (
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nPlease introduce yourself<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nI am the assistant of tunewiz.<|eot_id|>")
    assert trained_text(tok, e) == A1 + "<|eot_id|>"


def test_auto_template_masks_on_chatml(tok):
    e = Encoder(tok).encode(chat(MULTI))
    assert tok.decode(e.input_ids) == tok.apply_chat_template(MULTI, tokenize=False)
    assert trained_text(tok, e) == A1 + "<|im_end|>" + A2 + "<|im_end|>"
    # Trained spans are exactly the answers plus their <|im_end|>, each one contiguous.
    runs, cur = [], []
    for i, l in zip(e.input_ids, e.labels):
        if l != IGNORE:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    assert runs == [A1 + "<|im_end|>", A2 + "<|im_end|>"]
    assert all(l == IGNORE or l == i for i, l in zip(e.input_ids, e.labels))


def test_config_system_only_where_missing(tok):
    e = Encoder(tok, system="Be brief.").encode(chat(MULTI[1:3]))
    assert tok.decode(e.input_ids).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user")
    e = Encoder(tok, system="Be brief.").encode(chat(MULTI))
    assert "Be brief." not in tok.decode(e.input_ids) and SYSTEM in tok.decode(e.input_ids)


def test_auto_template_that_strips_answers_still_finds_them(tok):
    tok2 = _copy(tok, "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}"
                      "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    e = Encoder(tok2).encode(chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  Hello  "}]))
    assert trained_text(tok2, e) == "Hello<|im_end|>"


def test_auto_template_whose_prompt_differs_from_its_history_falls_back(tok):
    # The generation prompt says "assistant" but past answers render as "bot": prefixes
    # do not line up, so answers are found by their text after the previous one.
    tok2 = _copy(tok, "{% for m in messages %}<|im_start|>{{ 'bot' if m['role'] == 'assistant' else m['role'] }}\n"
                      "{{ m['content'] }}<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    e = Encoder(tok2).encode(chat(MULTI))
    assert trained_text(tok2, e) == A1 + "<|im_end|>" + A2 + "<|im_end|>"
    assert tok2.decode(e.input_ids) == tok2.apply_chat_template(MULTI, tokenize=False)


def test_auto_template_rejecting_a_conversation_is_a_data_error(tok):
    tok2 = _copy(tok, "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}"
                      "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(DataError) as e:
        Encoder(tok2).encode(chat([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"},
                                   {"role": "assistant", "content": "z"}], "d.jsonl:7"))
    assert e.value.where == "d.jsonl:7" and "must start with user" in e.value.msg


def test_auto_without_chat_template_suggests_a_named_one(tok):
    tok2 = _copy(tok, None)
    encoder = Encoder(tok2)
    with pytest.raises(ConfigError) as e:
        encoder.encode(chat(MULTI))
    assert "internlm2_chat" in e.value.hint
    # Pretraining text needs no template at all.
    assert encoder.encode(Sample("t:1", text="hello")).input_ids


def test_pretrain_is_bos_text_eos_with_loss_on_all_but_bos(tok):
    e = Encoder(tok, stage="pretrain").encode(Sample("t:1", text="The quick brown fox"))
    body = enc(tok, "The quick brown fox")
    assert e.input_ids == [tok.bos_token_id] + body + [tok.eos_token_id]
    assert e.labels == [IGNORE] + body + [tok.eos_token_id]


def test_pretrain_stage_on_dialogues_trains_every_token(tok):
    e = Encoder(tok, template="internlm2_chat", stage="pretrain").encode(chat(MULTI))
    assert e.labels[0] == IGNORE and e.labels[1:] == e.input_ids[1:]


def test_truncation_is_flagged(tok):
    e = Encoder(tok, template="internlm2_chat", max_length=12).encode(chat(MULTI))
    assert len(e.input_ids) == 12 == len(e.labels) and e.truncated
    assert not Encoder(tok, max_length=4096).encode(chat(MULTI)).truncated


def test_prompt_ids_match_the_training_prefix(tok):
    prompt = MULTI[:4]
    for template in ("internlm2_chat", "default"):
        encoder = Encoder(tok, template=template)
        full = encoder.encode(chat(MULTI)).input_ids
        p = encoder.prompt_ids(prompt)
        assert full[:len(p)] == p
        assert tok.decode(full[len(p):]).startswith(A2)
    p = Encoder(tok).prompt_ids(prompt)
    assert tok.decode(p) == tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert tok.decode(p).endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError):
        Encoder(tok).prompt_ids(MULTI)


def test_stop_words(tok):
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert Encoder(tok).stop_words == ["<|im_end|>"]           # found in the chat template; also EOS here
    assert Encoder(tok).stop_token_ids == [im_end]
    q = Encoder(tok, template="qwen_chat")
    assert q.stop_words == ["<|im_end|>", "<|endoftext|>"]
    assert q.stop_token_ids == [im_end, tok.convert_tokens_to_ids("<|endoftext|>")]
    l3 = Encoder(tok, template="llama3_chat")
    assert l3.stop_words == ["<|eot_id|>", "<|im_end|>"]
    assert Encoder(tok, template="llama3_chat").describe() == "llama3_chat" and Encoder(tok).describe() == "auto"


def test_unknown_template_is_a_config_error(tok):
    with pytest.raises(ConfigError):
        Encoder(tok, template="nope")


@pytest.mark.parametrize("template", ["auto", "internlm2_chat"])
def test_encoding_thousands_of_samples_reports_progress(tok, template):
    samples = [chat([{"role": "user", "content": f"{U1} {i}"}, {"role": "assistant", "content": f"{A1} {i}"}])
               for i in range(3000)]
    seen = []
    out = Encoder(tok, template=template).encode_many(samples, progress=lambda d, t: seen.append((d, t)))
    assert len(out) == 3000 and seen[-1] == (3000, 3000)


def _copy(tok, chat_template):
    import copy

    t = copy.deepcopy(tok)
    t.chat_template = chat_template
    return t
