"""Attention backends for training on packed rows, chosen by `train.attention`.

A packed row holds several samples back to back; `position_ids` restart at 0 for each.
Two ways keep the samples apart:

- `sdpa`, `eager`, `flex_attention` (transformers' own): transformers spots the restarts
  and builds a block-diagonal mask for every forward. With a dense mask SDPA cannot use
  its flash kernel, so a packed 2,048-token row pays for the full mask and a slower kernel.
- `varlen` (ours): the batch is flattened into one stream of samples, described by
  cumulative sample lengths (`cu_seqlens`), and handed to a variable-length flash kernel
  (`torch.nn.attention.varlen`, CUDA). No mask is built; attention costs the sum of the
  samples' own squares, not the row's. The lengths are computed once per micro-batch on
  the CPU, from the position ids, before the batch moves to the GPU: no host sync and no
  Python work per token or per layer beyond one kernel call.

`auto` picks `varlen` on CUDA when the kernel is there and the model uses transformers'
attention interface, else `sdpa`. Generation (the eval answers) passes no lengths; the
varlen backend then runs SDPA, which is exact for one unpadded prompt with a KV cache.
A batch whose rows each hold one whole sample (long pretraining documents) needs no
separation at all: the varlen backend hands it to SDPA's causal kernel, faster than the
varlen kernel on such rows (decided on the CPU with the lengths, see WHOLE_ROWS_KEY).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from .contract.config import ATTENTION_CHOICES

VARLEN = "tunewiz_varlen"          # the name registered with transformers
CHOICES = ATTENTION_CHOICES  # the config's list: one place for the names
LENGTH_KEYS = ("tw_cu_seqlens", "tw_max_seqlen")   # extra forward kwargs that reach attention
# A third one, a Python bool: every row of the batch is one whole sample (no packing, no
# padding), so attention is plain causal attention over each row and goes to SDPA, whose
# kernel was measured faster than the varlen one on such rows (docs/bench.md: 1.07x LoRA,
# 1.04x full, 1.18x QLoRA tokens/s on an H200, at less memory).
WHOLE_ROWS_KEY = "tw_whole_rows"


def varlen_kernel_available(device: str) -> bool:
    if not device.startswith("cuda"):
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401  (torch >= 2.10)
    except ImportError:
        return False
    return True


def implementation(requested: str, device: str, dtype=None) -> str:
    """The `attn_implementation` to load the model with. The flash kernel takes bf16/fp16
    only, so an fp32 run on a GPU stays on sdpa unless varlen is asked for by name."""
    if requested == "auto":
        half = dtype is None or str(dtype).replace("torch.", "") in ("bfloat16", "float16")
        requested = "varlen" if varlen_kernel_available(device) and half else "sdpa"
    if requested == "varlen":
        register()
        return VARLEN
    return requested


def why_auto_skips_varlen(device: str, dtype) -> str:
    """Why `auto` loaded a CUDA run without the varlen kernel (for its log): the kernel is
    missing, the dtype is one it does not take, or else the model's own attention code."""
    if not varlen_kernel_available(device):
        return "this torch has no varlen kernel (torch.nn.attention.varlen, torch 2.10 or later)"
    if str(dtype).replace("torch.", "") not in ("bfloat16", "float16"):
        return f"the varlen kernel takes bf16 or fp16, and this run trains in {str(dtype).replace('torch.', '')}"
    return "this model's attention code does not go through transformers' attention interface"


def uses_lengths(model) -> bool:
    """True when the loaded model runs the varlen backend (its batches need the lengths)."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "_attn_implementation", None) == VARLEN


def sample_lengths(position_ids, bound: int | None = None) -> dict:
    """The varlen kwargs for a (batch, width) CPU tensor of position ids: where each sample
    starts in the flattened batch (int32, the kernel's type) and the longest sample.
    ``bound`` reports that fixed upper bound instead (the kernel only sizes its grid by it),
    so compiled layers are not specialised on a number that changes every batch."""
    import torch

    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).flatten()
    cu = torch.cat([starts, torch.tensor([flat.numel()])]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    rows, width = position_ids.shape
    whole_rows = len(starts) == rows and bool((starts == torch.arange(0, rows * width, width)).all())
    return {LENGTH_KEYS[0]: cu, LENGTH_KEYS[1]: max(longest, bound or 0), WHOLE_ROWS_KEY: whole_rows}


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN, varlen_attention_forward)


def varlen_attention_forward(module, query, key, value, attention_mask, scaling: float | None = None,
                             dropout: float = 0.0, **kwargs: Any):
    """transformers' attention signature: query (B, H, S, D), key/value (B, Hkv, S, D);
    returns ((B, S, H, D), None)."""
    cu = kwargs.get(LENGTH_KEYS[0])
    whole_rows = kwargs.pop(WHOLE_ROWS_KEY, False)
    if cu is None or whole_rows:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        # Whole rows: one causal sample per row, which is SDPA's causal attention without a mask.
        return sdpa_attention_forward(module, query, key, value, None if whole_rows else attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    query, key, value = _autocast_inputs(query, key, value)
    b, h, s, d = query.shape
    # (B, H, S, D) -> (B*S, H, D): one stream of tokens, samples delimited by cu.
    q = query.transpose(1, 2).reshape(b * s, h, d)
    k = key.transpose(1, 2).reshape(b * s, key.shape[1], d)
    v = value.transpose(1, 2).reshape(b * s, value.shape[1], d)
    out = _kernel(q)(q, k, v, cu, kwargs[LENGTH_KEYS[1]], scaling)
    return out.reshape(b, s, h, d), None


def _autocast_inputs(query, key, value):
    """fp32 inputs on CUDA under autocast go to the flash kernel in the autocast dtype, as
    SDPA's would. QLoRA keeps the norms, and so the residual stream, in fp32: without this
    its attention would take the per-sample reference path, about 20x slower."""
    import torch

    if query.device.type == "cuda" and query.dtype == torch.float32 and torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        return query.to(dtype), key.to(dtype), value.to(dtype)
    return query, key, value


def _kernel(q):
    import torch

    half = q.dtype in (torch.bfloat16, torch.float16)
    return _flash_varlen if q.device.type == "cuda" and half else _reference_varlen


def _flash_varlen(q, k, v, cu, max_len: int, scale):
    from torch.nn.attention.varlen import varlen_attn

    params = _varlen_params()
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in params:
            causal["enable_gqa"] = True
        else:  # older torch: give every query head its own copy of its key/value head
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scale, **causal)


def _reference_varlen(q, k, v, cu, max_len: int, scale):
    """The same maths with SDPA one sample at a time: correct everywhere, fast nowhere. It
    serves CPU and fp32 runs that ask for `varlen` and lets CPU tests check the flattening."""
    import torch
    import torch.nn.functional as F

    rep = q.shape[1] // k.shape[1]
    bounds = cu.tolist()
    outs = []
    for a, z in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (t[a:z].transpose(0, 1) for t in (q, k, v))       # (H, n, D)
        ks, vs = ks.repeat_interleave(rep, dim=0), vs.repeat_interleave(rep, dim=0)
        outs.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale).transpose(0, 1))
    return torch.cat(outs)


@functools.cache
def _varlen_params() -> frozenset:
    """varlen_attn's keyword names: torch 2.10 takes is_causal, later ones window_size;
    enable_gqa is newer still."""
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)
