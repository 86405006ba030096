"""Whole rows (one sample per row, as long pretraining documents give) take SDPA's causal
attention; packed or padded rows keep the per-sample varlen path. Same maths either way."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.mark.parametrize("rows, whole", [
    ([list(range(6)), list(range(6))], True),              # each row one sample
    ([[0, 1, 2, 0, 1, 2], list(range(6))], False),         # packed: two samples in row 1
    ([[0, 1, 2, 3, 0, 1], list(range(6))], False),         # padded: the padding restarts at 0
])
def test_whole_rows_are_told_apart_from_packed_and_padded_ones(rows, whole):
    import torch

    from tunewiz.engine.attention import WHOLE_ROWS_KEY, sample_lengths

    out = sample_lengths(torch.tensor(rows))
    assert out[WHOLE_ROWS_KEY] is whole


def test_whole_rows_attend_as_the_per_sample_reference_does():
    import torch

    from tunewiz.engine import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, heads, 8, 16) for heads in (4, 2, 2))
    lengths = attention.sample_lengths(torch.arange(8).repeat(2, 1))
    assert lengths[attention.WHOLE_ROWS_KEY]
    module = SimpleNamespace(num_key_value_groups=2, is_causal=True)   # what a decoder's attention carries
    out, _ = attention.varlen_attention_forward(module, q, k, v, None, scaling=0.25, **lengths)
    flat = (t.transpose(1, 2).reshape(16, t.shape[1], 16) for t in (q, k, v))
    ref = attention._reference_varlen(*flat, lengths["tw_cu_seqlens"], 8, 0.25)
    torch.testing.assert_close(out.reshape(16, 4, 16), ref, rtol=1e-5, atol=1e-5)
