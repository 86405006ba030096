"""train.host_embedding: an adapter run's frozen input table in host memory, same rows.

The rule (which runs) is checked as a table; the move itself on a real peft LoRA model on
the CPU: the same loss and adapter gradients through the batch's looked-up rows as through
the model's own embedding, the same greedy answer through the ids path, and the table gone
from the parameters. The GPU test (tests/gpu/test_gpu.py) trains with it through the CLI.
"""

from __future__ import annotations

import pytest

from tunewiz.engine.contract.config import config_from_dict
from tunewiz.engine.contract.embedding_placement import why_embedding_stays_on_gpu
from tunewiz.engine.contract.memory_estimate import estimate
from tunewiz.engine.contract.model_facts import read_model_facts
from support.model_shapes import model_folder


def config(method="lora", **over):
    return config_from_dict({"model": {"path": "m"}, "method": method, "data": {"files": ["d.jsonl"]}, **over})


@pytest.mark.parametrize("method, on_cuda, tied, over, stays", [
    ("lora", True, False, {}, None),
    ("qlora", True, False, {}, None),
    ("lora", False, False, {}, ""),                        # a CPU run: nothing to save
    ("full", True, False, {}, "trains the embedding"),
    ("lora", True, True, {}, "tied embeddings"),
    ("lora", True, False, {"layout": {"deepspeed": "zero2"}}, "DeepSpeed"),
    ("lora", True, False, {"train": {"host_embedding": False}}, "train.host_embedding is false"),
])
def test_which_runs_keep_the_input_table_in_host_memory(method, on_cuda, tied, over, stays):
    why = why_embedding_stays_on_gpu(config(method, **over), on_cuda, tied)
    if stays is None:
        assert why is None
    else:
        assert why is not None and stays in why


def test_the_estimate_leaves_the_table_off_the_gpu(tmp_path):
    facts = read_model_facts(model_folder(tmp_path, "7b"))
    on, off = (estimate(config("qlora", train={"host_embedding": h}), facts, 1) for h in (True, False))
    table_gib = facts.vocab * facts.hidden * 2 / 2**30          # bf16 rows, 0.71 GiB here
    assert off.parts["model"] - on.parts["model"] == pytest.approx(table_gib)
    assert any("host memory" in n for n in on.notes) and not any("host memory" in n for n in off.notes)
    cpu = estimate(config("lora"), facts, 0)
    assert not any("host memory" in n for n in cpu.notes)


@pytest.fixture
def lora_model(tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def build():
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        for p in base.parameters():
            p.requires_grad_(False)
        model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
        # LoRA's B starts at zero; give it values so the adapters shape the loss and gradients.
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.02)
        return model
    return build


def test_host_rows_train_the_same_as_the_models_own_embedding(lora_model):
    import torch

    from tunewiz.engine import host_embedding

    ref, moved = lora_model(), lora_model()
    assert host_embedding.movable(moved) and not host_embedding.tied(moved)
    before = sum(p.numel() for p in moved.parameters())
    host = host_embedding.keep_on_host(moved, "cpu")
    assert before - sum(p.numel() for p in moved.parameters()) == host.table.numel()
    assert moved.get_input_embeddings() is host and "in host memory" in repr(host)

    ids = torch.randint(0, host.num_embeddings, (2, 24), generator=torch.Generator().manual_seed(1))
    rows = host.lookup(ids)
    assert torch.equal(rows, ref.get_input_embeddings()(ids))
    loss_ref = ref(input_ids=ids, labels=ids).loss
    loss_host = moved(inputs_embeds=rows, labels=ids).loss
    assert loss_host.item() == loss_ref.item()
    loss_ref.backward()
    loss_host.backward()
    grads = {n: p.grad for n, p in moved.named_parameters() if p.requires_grad}
    assert grads and all(torch.equal(g, dict(ref.named_parameters())[n].grad) for n, g in grads.items())

    # The ids path (the eval answers' generate) looks the same rows up.
    prompt = ids[:1, :6]
    a = ref.generate(input_ids=prompt, max_new_tokens=5, do_sample=False)
    b = moved.generate(input_ids=prompt, max_new_tokens=5, do_sample=False)
    assert torch.equal(a, b)


def test_a_tied_or_targeted_embedding_is_not_moved(tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunewiz.engine import host_embedding

    from transformers import AutoConfig

    tied = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model, tie_word_embeddings=True))
    assert host_embedding.tied(tied)
    targeted = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                              LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]))
    assert not host_embedding.movable(targeted)   # peft's LoRA embedding trains through its table
    trained = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert not host_embedding.movable(trained)    # a full run trains it
    assert isinstance(trained.get_input_embeddings(), torch.nn.Embedding)
