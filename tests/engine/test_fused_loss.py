"""The fused loss (engine/fused_loss.py) gives transformers' loss and gradients, on packed
rows with masked labels, for LoRA and full training, in fp32 and under bf16 autocast."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tunewiz.engine import fused_loss

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def packed_batch(tokenizer, rows: int = 2, width: int = 40):
    """Rows of packed samples whose prompt tokens are masked, as the data pipeline makes them."""
    import torch

    from tunewiz.engine.packing import collate

    g = torch.Generator().manual_seed(0)
    seqs = []
    for _ in range(rows):
        ids, labels, pos = [], [], []
        while len(ids) < width - 12:
            n, prompt = int(torch.randint(6, 12, (), generator=g)), int(torch.randint(2, 5, (), generator=g))
            sample = torch.randint(10, len(tokenizer), (n,), generator=g).tolist()
            ids += sample
            labels += [-100] * prompt + sample[prompt:]
            pos += list(range(n))
        seqs.append({"input_ids": ids, "labels": labels, "position_ids": pos})
    batch = collate(seqs, tokenizer.pad_token_id)
    n_items = int((batch["labels"][:, 1:] != -100).sum()) + 3  # as if other micro-batches shared the step
    return {k: v for k, v in batch.items() if k in ("input_ids", "labels", "position_ids")}, n_items


def load(tiny_model, method: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                 lora_dropout=0.0, task_type="CAUSAL_LM"))
        for name, p in model.named_parameters():  # non-zero B, so every adapter gets a gradient
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)
    return tok, model


def loss_and_grads(model, batch, n_items, fused: bool, autocast: bool = False, device: str = "cpu"):
    import torch

    model.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        if fused:
            loss = fused_loss.shifted_loss(model, batch, n_items)
        else:
            loss = model(**batch, num_items_in_batch=n_items).loss
    (loss * 3.0).backward()  # a non-unit incoming gradient, as under DDP / accumulation
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("chunk_tokens", [None, 7])
def test_fused_loss_equals_the_models_own(tiny_model, method, chunk_tokens, monkeypatch):
    import torch

    tok, model = load(tiny_model, method)
    assert fused_loss.unsupported(model) is None
    if chunk_tokens:  # several chunks, the last one partial
        for name in ("CHUNK_ELEMENTS", "TRAINED_HEAD_CHUNK_ELEMENTS"):
            monkeypatch.setattr(fused_loss, name, chunk_tokens * model.config.vocab_size)
    batch, n_items = packed_batch(tok)
    ref_loss, ref_grads = loss_and_grads(model, batch, n_items, fused=False)
    loss, grads = loss_and_grads(model, batch, n_items, fused=True)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    if method == "full":
        assert any("lm_head" in n for n in grads)  # the output layer trains too
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fused_loss_under_bf16_autocast_matches(tiny_model):
    """LoRA on a GPU runs under bf16 autocast: the logits' matmul is bf16 on both paths."""
    import torch

    tok, model = load(tiny_model, "lora")
    batch, n_items = packed_batch(tok)
    ref_loss, ref_grads = loss_and_grads(model, batch, n_items, fused=False, autocast=True)
    loss, grads = loss_and_grads(model, batch, n_items, fused=True, autocast=True)
    torch.testing.assert_close(loss, ref_loss, rtol=2e-3, atol=1e-3)
    for name in ref_grads:
        cos = torch.nn.functional.cosine_similarity(grads[name].flatten(), ref_grads[name].flatten(), dim=0)
        assert cos > 0.999, (name, float(cos))


def test_models_the_fused_loss_does_not_know_keep_their_own(tiny_model):
    from peft import LoraConfig, get_peft_model

    _, model = load(tiny_model, "full")
    model.config.model_type = "gemma2"  # soft-caps its logits: a plain projection would be wrong
    assert "gemma2" in fused_loss.unsupported(model)
    _, model = load(tiny_model, "full")
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["lm_head"], task_type="CAUSAL_LM"))
    assert "adapted" in fused_loss.unsupported(model)


@pytest.mark.parametrize("hidden_size,rows,head_trains", [(4096, 2048, False), (2048, 8192, True)])
def test_the_loss_holds_one_chunk_of_logits_at_a_time(hidden_size, rows, head_trains):
    """On a 92k vocabulary (7B QLoRA's frozen head, 1.8B full fine-tuning's trained one), the
    loss's forward keeps its fp32 gradient sums and, at any moment, one chunk's logits and
    probabilities: no gradient of the chunk before, no second copy of a sum while scaling it.
    Counted on the meta device (bench/bench_loss_memory.py): no compute, real sizes."""
    from bench_loss_memory import VOCAB, loss_forward_peak, on_meta

    with on_meta("as-is"):
        peak = loss_forward_peak(fused_loss, hidden_size, rows, head_trains)
    chunk = (fused_loss.TRAINED_HEAD_CHUNK_ELEMENTS if head_trains else fused_loss.CHUNK_ELEMENTS) // VOCAB
    sums = rows * hidden_size * 4 + (VOCAB * hidden_size * 4 if head_trains else 0)
    # One chunk: bf16 logits, and fp32 probabilities twice (off CUDA, softmax(dtype=float32)
    # converts its input first; CUDA's half-to-float kernel writes them once).
    one_chunk = chunk * VOCAB * (2 + 4 + 4)
    mib = 2**20
    assert peak <= sums + one_chunk + 8 * mib, (peak / mib, (sums + one_chunk) / mib)
