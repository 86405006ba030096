"""Packing: position ids, label masking, batching, and no attention across packed samples."""

from __future__ import annotations

import json
import random

import pytest

from tunewiz.engine.contract.config import DataConfig
from tunewiz.engine.dataset import build_dataset
from tunewiz.engine.encode import IGNORE, Encoded
from tunewiz.engine.contract.errors import DataError
from tunewiz.engine.packing import collate, pack, unpacked


def sample(start: int, n: int) -> Encoded:
    ids = list(range(start, start + n))
    return Encoded(ids, [IGNORE] + ids[1:])


def test_pack_restarts_positions_and_masks_each_first_label():
    a, b, c = sample(10, 5), sample(20, 3), sample(30, 6)
    seqs = pack([a, b, c], max_length=8)
    assert all(len(s["input_ids"]) <= 8 for s in seqs)
    # Best fit, longest first: [c] and then a+b share the second sequence.
    assert len(seqs) == 2
    by_first = {s["input_ids"][0]: s for s in seqs}
    ab = by_first[10]
    assert ab["input_ids"] == a.input_ids + b.input_ids
    assert ab["position_ids"] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert ab["labels"] == [IGNORE, 11, 12, 13, 14, IGNORE, 21, 22]
    assert by_first[30]["position_ids"] == list(range(6))


def test_pack_keeps_every_token_once_and_fills_well():
    rng = random.Random(0)
    samples = [sample(i * 1000, rng.randint(1, 300)) for i in range(500)]
    seqs = pack(samples, max_length=512)
    packed = sorted(t for s in seqs for t in s["input_ids"])
    assert packed == sorted(t for s in samples for t in s.input_ids)
    assert all(len(s["input_ids"]) <= 512 for s in seqs)
    total = sum(len(s.input_ids) for s in samples)
    assert len(seqs) <= total / 512 * 1.05 + 1     # within 5% of a perfect fill


def test_pack_rejects_overlong_samples():
    with pytest.raises(ValueError):
        pack([sample(0, 9)], max_length=8)


def test_unpacked_and_collate_padding():
    seqs = unpacked([sample(10, 5), sample(20, 2)])
    batch = collate(seqs, pad_id=0)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].tolist() == [[10, 11, 12, 13, 14], [20, 21, 0, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 11, 12, 13, 14], [IGNORE, 21, IGNORE, IGNORE, IGNORE]]
    # Padding counts from 0 again: transformers sees it as one more sample, not a continuation.
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 0, 1, 2]]
    assert collate(seqs, 0, attention_mask=True)["attention_mask"].tolist() == [[1] * 5, [1, 1, 0, 0, 0]]


@pytest.fixture(scope="module")
def model(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    m.config.use_cache = False      # as training runs it (a KV cache turns packed masking off)
    return m.eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager", "varlen"])
def test_packed_samples_do_not_attend_to_each_other(model, attn):
    import torch

    from tunewiz.engine import attention

    model.set_attn_implementation(attention.implementation(attn, "cpu"))
    rng = random.Random(1)
    vocab = model.config.vocab_size
    samples = [Encoded(ids, ids) for ids in ([rng.randrange(10, vocab) for _ in range(n)] for n in (17, 9, 23, 5, 30))]
    seqs = pack(samples, max_length=40)
    assert any(len(_boundaries(s["position_ids"])) > 1 for s in seqs)   # some row holds several
    batch = collate(seqs, pad_id=model.config.pad_token_id)
    lengths = attention.sample_lengths(batch["position_ids"]) if attn == "varlen" else {}
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], **lengths).logits
        for row, seq in enumerate(seqs):
            start = 0
            for pos_end in _boundaries(seq["position_ids"]):
                alone_ids = seq["input_ids"][start:pos_end]
                alone = model(input_ids=torch.tensor([alone_ids])).logits[0]
                torch.testing.assert_close(packed[row, start:pos_end], alone, rtol=0, atol=1e-5)
                start = pos_end
    model.set_attn_implementation("sdpa")


def test_varlen_gradients_match_sdpa(tiny_model):
    """Training through the varlen backend gives sdpa's loss and gradients on packed rows
    (here with the reference kernel; tests/test_gpu.py runs the flash kernel)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tunewiz.engine import attention

    rng = random.Random(2)
    samples = [Encoded(ids, ids) for ids in ([rng.randrange(10, 300) for _ in range(n)] for n in (12, 7, 20, 3, 9))]
    batch = collate(pack(samples, max_length=24), pad_id=0)
    assert attention.sample_lengths(batch["position_ids"])["tw_cu_seqlens"].tolist()[0] == 0
    results = []
    for attn in ("sdpa", "varlen"):
        m = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32,
                                                 attn_implementation=attention.implementation(attn, "cpu"))
        m.config.use_cache = False
        extra = attention.sample_lengths(batch["position_ids"]) if attention.uses_lengths(m) else {}
        assert bool(extra) == (attn == "varlen")
        loss = m(**batch, **extra).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in m.named_parameters()}))
    (l_sdpa, g_sdpa), (l_var, g_var) = results
    torch.testing.assert_close(l_var, l_sdpa, rtol=0, atol=1e-5)
    for name, g in g_sdpa.items():
        torch.testing.assert_close(g_var[name], g, rtol=1e-4, atol=1e-6)


def test_sample_lengths_flatten_rows_and_padding():
    import torch

    from tunewiz.engine.attention import sample_lengths

    pos = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]])   # row 2: a 2-token sample, then 3 of padding
    out = sample_lengths(pos)
    assert out["tw_cu_seqlens"].tolist() == [0, 3, 5, 7, 10] and out["tw_cu_seqlens"].dtype == torch.int32
    assert out["tw_max_seqlen"] == 3
    assert sample_lengths(pos, bound=8)["tw_max_seqlen"] == 8     # compiled runs: one fixed bound
    wide = collate([{"input_ids": [5, 6], "labels": [5, 6], "position_ids": [0, 1]}], pad_id=0, width=6)
    assert wide["position_ids"].tolist() == [[0, 1, 0, 1, 2, 3]] and wide["labels"].tolist()[0][2:] == [-100] * 4
    # an epoch's short last batch, padded to the compiled batch shape: the extra row trains nothing
    full = collate([{"input_ids": [5, 6], "labels": [5, 6], "position_ids": [0, 1]}], pad_id=0, width=4, rows=3)
    assert full["input_ids"].shape == (3, 4) and full["input_ids"][1:].eq(0).all()
    assert full["labels"][1:].eq(-100).all() and full["position_ids"].tolist()[1:] == [[0, 1, 2, 3]] * 2
    assert sample_lengths(full["position_ids"])["tw_cu_seqlens"].tolist() == [0, 2, 4, 8, 12]


def test_cross_attention_would_show(model):
    """The check above can fail: the same row with continuous positions gives other logits."""
    import torch

    ids = list(range(20, 50))
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([ids[15:]])).logits[0]
        joined = model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([list(range(15)) * 2])).logits[0]
        leaked = model(input_ids=torch.tensor([ids])).logits[0]
    torch.testing.assert_close(joined[15:], alone, rtol=0, atol=1e-5)
    assert (leaked[15:] - alone).abs().max() > 1e-3


def _boundaries(position_ids):
    ends = [i for i in range(1, len(position_ids)) if position_ids[i] == 0]
    return ends + [len(position_ids)]


# --------------------------------------------------------------------------- build_dataset

@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _write(path, n):
    path.write_text("\n".join(json.dumps({"conversation": [{"input": f"Please introduce yourself {i}",
                                                             "output": f"I am the assistant of tunewiz {i}." * (i % 7 + 1)}]})
                              for i in range(n)) + "\n")
    return str(path)


@pytest.mark.parametrize("pack_", [True, False])
def test_build_dataset(tmp_path, tok, pack_):
    f = _write(tmp_path / "d.jsonl", 3000)
    seen = []
    seqs, stats = build_dataset(DataConfig(files=[f], max_length=128, pack=pack_), "sft", tok,
                                progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3000, 3000) and all(d < t for d, t in seen[:-1])   # never "done" early
    assert stats["records"] == 3000 and stats["sequences"] == len(seqs)
    assert sum(b["count"] for b in stats["length_histogram"]) == 3000
    assert 0 < stats["trained_tokens"] < stats["tokens"]
    assert all(len(s["input_ids"]) == len(s["labels"]) == len(s["position_ids"]) <= 128 for s in seqs)
    if pack_:
        assert len(seqs) <= stats["tokens"] / 128 * 1.1 + 1
        assert sum(len(s["input_ids"]) for s in seqs) == stats["tokens"]
    else:
        assert len(seqs) == 3000


def test_build_dataset_counts_truncation_and_drops_samples_without_answers(tmp_path, tok):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"conversation": [{"input": "x " * 200, "output": "y"}]}) + "\n"
                 + json.dumps({"conversation": [{"input": "q", "output": "a"}]}) + "\n")
    seqs, stats = build_dataset(DataConfig(files=[str(f)], max_length=32), "sft", tok)
    assert stats["truncated"] == 1 and stats["no_loss"] == 1 and len(seqs) == 1
    f.write_text(json.dumps({"conversation": [{"input": "x " * 200, "output": "y"}]}) + "\n")
    with pytest.raises(DataError):
        build_dataset(DataConfig(files=[str(f)], max_length=32), "sft", tok)
