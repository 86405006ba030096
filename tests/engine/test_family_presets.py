"""Presets for the model families users train: each loads without the hub, its LoRA targets
are the family's own linear layers, its template trains only the answers and what ends them,
and `tunewiz presets list -p` finds it by family, XTuner config name or hub id."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.tiny_model import CORPUS
from tunewiz.engine.contract.config import absolute_paths, check_lora_target, load_config
from tunewiz.engine.contract.formats import Sample
from tunewiz.engine.encode import IGNORE, Encoder
from tunewiz.engine.preset_catalog import list_presets

# preset name prefix -> family
FAMILIES = {"internlm2": "internlm2", "qwen2_5": "qwen2", "qwen3": "qwen3", "llama3": "llama3",
            "mistral": "mistral"}
# The sizes each model line offers (the name's size after the line's prefix), so a lost
# file is noticed.
SIZES = {
    "internlm2_chat": {"1_8b", "7b", "20b"},
    "internlm2_5_chat": {"1_8b", "7b", "20b"},
    "qwen2_5": {"0_5b", "1_5b", "7b", "14b", "32b", "72b"},
    "qwen3": {"0_6b", "1_7b", "8b", "32b"},
    "llama3_1": {"8b"},
    "llama3_3": {"70b"},
    "mistral": {"7b"},
}
TEMPLATE = {"internlm2": "internlm2_chat", "qwen2": "qwen_chat", "qwen3": "qwen3_chat",
            "llama3": "llama3_chat", "mistral": "mistral"}
HUB_OWNER = {"internlm2": "internlm/", "qwen2": "Qwen/", "qwen3": "Qwen/", "llama3": "meta-llama/",
             "mistral": "mistralai/"}


def family_of(stem: str) -> str | None:
    return next((fam for prefix, fam in FAMILIES.items() if stem.startswith(prefix)), None)


FAMILY_PRESETS = [p for p in list_presets() if family_of(p.stem)]


def test_every_family_and_size_has_presets():
    import re

    for line, sizes in SIZES.items():
        have = {m.group(1) for p in FAMILY_PRESETS
                if (m := re.match(rf"{line}_(\d+(?:_\d+)?b)_", p.stem))}
        assert have == sizes, line
    assert 15 <= len(FAMILY_PRESETS) <= 25


@pytest.mark.parametrize("preset", FAMILY_PRESETS, ids=lambda p: p.stem)
def test_family_preset_loads_offline_and_keeps_its_hub_id(preset, tmp_path, monkeypatch):
    family = family_of(preset.stem)
    cfg = load_config(preset)
    assert cfg.name == preset.stem
    assert cfg.model.path.startswith(HUB_OWNER[family])
    assert cfg.model.trust_remote_code == (family == "internlm2")  # InternLM2 ships its own code
    assert cfg.data.template == TEMPLATE[family]
    assert cfg.method == preset.stem.rsplit("_", 1)[-1]
    # A run's own config keeps the hub id as written, not as a folder under the current one.
    monkeypatch.chdir(tmp_path)
    assert absolute_paths(cfg).model.path == cfg.model.path


# ------------------------------------------------------------------ LoRA targets

def tiny_family_model(family: str):
    """A tiny random model of the family's architecture, from a config alone (no weights)."""
    import torch
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

    torch.manual_seed(0)
    dims = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2)
    if family == "internlm2":
        return internlm2_layout(**dims)
    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM),
                             "llama3": (LlamaConfig, LlamaForCausalLM),
                             "mistral": (MistralConfig, MistralForCausalLM)}[family]
    return model_cls(config_cls(**dims))


def internlm2_layout(vocab_size, hidden_size, intermediate_size, num_hidden_layers,
                     num_attention_heads, num_key_value_heads):
    """InternLM2's module tree, built by hand: its modeling code comes with the model on the
    hub (trust_remote_code), which tests cannot reach. The names and shapes follow that code:
    model.tok_embeddings, model.layers.N.attention.{wqkv,wo}, model.layers.N.feed_forward.
    {w1,w2,w3}, the two RMSNorms, model.norm and the output head."""
    from torch import nn

    head_dim = hidden_size // num_attention_heads

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.wqkv = nn.Linear(hidden_size, (num_attention_heads + 2 * num_key_value_heads) * head_dim, bias=False)
            self.wo = nn.Linear(num_attention_heads * head_dim, hidden_size, bias=False)

    class FeedForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Linear(hidden_size, intermediate_size, bias=False)
            self.w3 = nn.Linear(hidden_size, intermediate_size, bias=False)
            self.w2 = nn.Linear(intermediate_size, hidden_size, bias=False)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()
            self.feed_forward = FeedForward()
            self.attention_norm = nn.RMSNorm(hidden_size)
            self.ffn_norm = nn.RMSNorm(hidden_size)

    class Body(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_embeddings = nn.Embedding(vocab_size, hidden_size)
            self.layers = nn.ModuleList(Layer() for _ in range(num_hidden_layers))
            self.norm = nn.RMSNorm(hidden_size)

    class InternLM2ForCausalLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Body()
            self.output = nn.Linear(hidden_size, vocab_size, bias=False)

        def prepare_inputs_for_generation(self, *args, **kwargs):
            # peft's causal-LM wrapper keeps a reference to it; nothing here generates.
            raise NotImplementedError

    return InternLM2ForCausalLM()


@pytest.mark.parametrize("preset", FAMILY_PRESETS, ids=lambda p: p.stem)
def test_lora_targets_are_every_linear_layer_but_the_head(preset):
    import torch
    from peft import get_peft_model

    from tunewiz.engine.models import lora_config

    cfg = load_config(preset)
    model = tiny_family_model(family_of(preset.stem))
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    head = "output" if family_of(preset.stem) == "internlm2" else "lm_head"
    check_lora_target(cfg, [n for n, _ in model.named_modules()], linear)  # what training checks first
    peft_model = get_peft_model(model, lora_config(cfg))
    wrapped = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {n for n in linear if n != head}


# ------------------------------------------------------------------ templates and label masks

# The special tokens each family's tokenizer has, and its BOS / EOS (as the released
# tokenizers set them; Qwen has no BOS and its instruct EOS is <|im_end|>).
TOKENIZERS = {
    "internlm2": dict(specials=["<s>", "</s>", "<|im_start|>", "<|im_end|>"], bos="<s>", eos="</s>"),
    "qwen2": dict(specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], bos=None, eos="<|im_end|>"),
    "qwen3": dict(specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], bos=None, eos="<|im_end|>",
                  added=["<think>", "</think>"]),
    "llama3": dict(specials=["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                   bos="<|begin_of_text|>", eos="<|eot_id|>"),
    "mistral": dict(specials=["<s>", "</s>", "[INST]", "[/INST]"], bos="<s>", eos="</s>"),
}
# What ends an answer in each family (trained): the template's suffix, or EOS.
ANSWER_END = {"internlm2": "<|im_end|>", "qwen2": "<|im_end|>", "qwen3": "<|im_end|>",
              "llama3": "<|eot_id|>", "mistral": "</s>"}


def tiny_family_tokenizer(family: str):
    """A byte-level BPE trained here on a few sentences, with the family's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

    spec = TOKENIZERS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=500, special_tokens=spec["specials"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    cls = Qwen2Tokenizer if family.startswith("qwen") else PreTrainedTokenizerFast
    hf = cls(tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"])
    hf.add_tokens(spec.get("added", []))
    return hf


SYSTEM = "You are a helpful assistant."
U1, A1 = "Please introduce yourself", "I am the assistant of tunewiz."
U2, A2 = "Who are you?", "I am happy to help you."
TWO_TURNS = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": U1},
             {"role": "assistant", "content": A1}, {"role": "user", "content": U2},
             {"role": "assistant", "content": A2}]


def trained_runs(tok, encoded) -> list[str]:
    """The trained stretches of a sequence, decoded: one per answer when the mask is right."""
    runs, current = [], []
    for token, label in zip(encoded.input_ids, encoded.labels):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tok.decode(r) for r in runs]


@pytest.mark.parametrize("family", sorted(TOKENIZERS))
def test_family_template_trains_each_answer_and_its_end_only(family):
    preset = next(p for p in FAMILY_PRESETS if family_of(p.stem) == family)
    cfg = load_config(preset)
    tok = tiny_family_tokenizer(family)
    encoder = Encoder.from_config(tok, cfg.data, cfg.stage)
    encoded = encoder.encode(Sample("t.json:1", messages=TWO_TURNS))
    end = ANSWER_END[family]

    assert trained_runs(tok, encoded) == [A1 + end, A2 + end]
    # The end marker is one token, and the one generation stops at: chat ends where training did.
    end_ids = tok.encode(end, add_special_tokens=False)
    assert len(end_ids) == 1 and end_ids[0] in encoder.stop_token_ids
    prompt = tok.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label == IGNORE])
    assert SYSTEM in prompt and U1 in prompt and U2 in prompt
    assert A1 not in prompt and A2 not in prompt


def test_qwen3_answers_in_non_thinking_mode():
    """Qwen3 thinks first unless its answer opens with an empty think block: the block is in
    the prompt (untrained) of every turn and ends the generation prompt, as Qwen3's own
    template renders it with enable_thinking=False."""
    tok = tiny_family_tokenizer("qwen3")
    encoder = Encoder(tok, template="qwen3_chat")
    encoded = encoder.encode(Sample("t.json:1", messages=TWO_TURNS))
    prompt = tok.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label == IGNORE])
    assert prompt.count("<|im_start|>assistant\n<think>\n\n</think>\n\n") == 2
    generation = tok.decode(encoder.prompt_ids(TWO_TURNS[:2]))
    assert generation.endswith("<|im_start|>user\nPlease introduce yourself<|im_end|>\n"
                               "<|im_start|>assistant\n<think>\n\n</think>\n\n")



def test_qwen3_chat_as_jinja_renders_what_training_saw():
    """merge writes the named template into the merged tokenizer: plain transformers then
    renders a Qwen3 conversation, think blocks included, exactly as the encoder did."""
    from tunewiz.engine.contract.templates import get_template, template_to_jinja

    tok = tiny_family_tokenizer("qwen3")
    encoder = Encoder(tok, template="qwen3_chat")
    trained_on = tok.decode(encoder.encode(Sample("t.json:1", messages=TWO_TURNS)).input_ids)
    tok.chat_template = template_to_jinja(get_template("qwen3_chat"), bos=False)
    assert tok.apply_chat_template(TWO_TURNS, tokenize=False) == trained_on
    assert tok.apply_chat_template(TWO_TURNS[:2], tokenize=False, add_generation_prompt=True) == \
        tok.decode(encoder.prompt_ids(TWO_TURNS[:2]))

# ------------------------------------------------------------------ the CLI

def listed(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def test_presets_list_finds_a_family(cli):
    internlm = listed(cli("presets", "list", "-p", "internlm2"))
    assert internlm == [p.stem for p in FAMILY_PRESETS if p.stem.startswith("internlm2")]
    assert {"internlm2_chat_1_8b_lora", "internlm2_chat_7b_qlora", "internlm2_chat_20b_qlora",
            "internlm2_5_chat_7b_qlora"} <= set(internlm)
    qwen = listed(cli("presets", "list", "-p", "qwen"))
    assert qwen and all(s.startswith(("qwen2_5_", "qwen3_")) for s in qwen)
    assert {"qwen2_5_0_5b_instruct_full", "qwen2_5_72b_instruct_qlora", "qwen3_8b_qlora"} <= set(qwen)
    # smaller models first (by number, not by text: 7b before 14b)
    assert [s for s in qwen if s.startswith("qwen2_5_")] == [
        "qwen2_5_0_5b_instruct_full", "qwen2_5_1_5b_instruct_lora", "qwen2_5_7b_instruct_lora",
        "qwen2_5_7b_instruct_qlora", "qwen2_5_14b_instruct_qlora", "qwen2_5_32b_instruct_qlora",
        "qwen2_5_72b_instruct_qlora"]


def test_presets_list_finds_xtuner_names_and_hub_ids(cli):
    assert listed(cli("presets", "list", "-p", "internlm2_chat_7b")) == ["internlm2_chat_7b_qlora"]
    # XTuner's config names carry the dataset and the epochs too.
    assert listed(cli("presets", "list", "-p", "internlm2_chat_7b_qlora_alpaca_e3")) == ["internlm2_chat_7b_qlora"]
    assert listed(cli("presets", "list", "-p", "Qwen/Qwen2.5-7B-Instruct")) == \
        ["qwen2_5_7b_instruct_lora", "qwen2_5_7b_instruct_qlora"]
    assert listed(cli("presets", "list", "-p", "Llama-3.3-70B")) == ["llama3_3_70b_instruct_qlora"]
    assert listed(cli("presets", "list", "-p", "mistral")) == \
        ["mistral_7b_instruct_v0_3_lora", "mistral_7b_instruct_v0_3_qlora"]
    r = cli("presets", "list", "-p", "internlm3")
    assert r.returncode == 0 and "no preset matches 'internlm3'" in r.stdout


def test_hub_model_offline_and_not_cached_is_one_line(cli, tmp_path):
    """Training a family preset without the model in the cache, offline: exit 1, one line
    naming the hub id and how to get it, no traceback."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "assistant.json").write_text(
        '[{"conversation": [{"input": "hi", "output": "hello"}]}]', encoding="utf-8")
    r = cli("presets", "copy", "qwen3_0_6b_full", str(tmp_path / "q.yaml"))
    assert r.returncode == 0, r.stderr
    r = cli("train", "q.yaml", cwd=tmp_path, env={"HF_HUB_CACHE": str(tmp_path / "empty-cache")})
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "Qwen/Qwen3-0.6B" in r.stderr and "hf download Qwen/Qwen3-0.6B" in r.stderr


def cache_tiny_model(hub: Path, model_id: str, family: str) -> None:
    """A tiny random model of the family in a Hugging Face cache folder, laid out as
    `hf download` leaves it (refs/main naming the snapshot that holds the files)."""
    repo = hub / ("models--" + model_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abcd"
    tok = tiny_family_tokenizer(family)
    tok.save_pretrained(snapshot)
    model = tiny_family_model(family)
    model.resize_token_embeddings(len(tok))
    model.config.eos_token_id = model.config.pad_token_id = tok.eos_token_id
    model.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")


def test_hub_model_in_the_cache_is_used_offline(cli, tmp_path):
    """A hub id that the Hugging Face cache holds works without the hub: check-data counts
    with its tokenizer, and a family preset trains it, its run config keeping the hub id."""
    import json

    from tunewiz.engine.contract.config import dump_yaml

    cache_tiny_model(tmp_path / "hub", "Qwen/Qwen3-1.7B", "qwen3")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": TWO_TURNS}) + "\n", encoding="utf-8")

    r = cli("check-data", str(data), "--model", "Qwen/Qwen3-1.7B", "--template", "qwen3_chat", "--json",
            cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["template"] == "qwen3_chat" and report["samples"] == 1

    cfg = load_config(next(p for p in FAMILY_PRESETS if p.stem == "qwen3_1_7b_lora"))
    cfg.data.files = [str(data)]
    cfg.train.max_steps, cfg.train.grad_accum, cfg.eval.every = 2, 1, 0
    (tmp_path / "q.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    r = cli("train", "q.yaml", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    run = next((tmp_path / "work_dirs").iterdir())
    assert load_config(run / "config.yaml").model.path == "Qwen/Qwen3-1.7B"
    assert '"type": "done", "status": "completed"' in (run / "events.jsonl").read_text()
