"""Packing encoded samples into fixed-budget sequences, and batching them for the model.

A packed sequence is several samples back to back, each with ``position_ids`` counting
from 0 again. That restart is what keeps samples apart: transformers (5.x) reads
``position_ids`` when no ``attention_mask`` is given and builds a block-diagonal causal
mask, one block per sample (``masking_utils.find_packed_sequence_indices``), for sdpa,
eager and flex attention. So a batch must carry **no attention_mask**, and the forward must run
without a KV cache (``use_cache=False``): with a cache object present, transformers skips
the detection and samples would see each other. tests/engine/test_packing.py proves the logits of
a packed row equal those of each sample run alone.

The first label of every sample is masked: the model shifts labels by one, so that label
would otherwise be predicted from the previous sample's last token.
"""

from __future__ import annotations

import bisect
from typing import Iterable, Sequence

import numpy as np

from .encode import IGNORE, Encoded


def pack_lengths(lengths, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-fit-decreasing packing of samples of these lengths into rows of at most max_length.

    Returns (members, offsets), int64 arrays: row r holds the samples
    ``members[offsets[r]:offsets[r + 1]]``, longest first. Zero-length samples are left out.
    Open rows are kept in one heap per room left, and the rooms that have a row in a sorted
    list (at most max_length of them), so the tightest row that fits is found at once and a
    million samples pack in seconds; among equal rooms the lowest row number wins, as a
    plain best-fit scan would choose. Memory stays a few bytes per sample: the per-sample
    bookkeeping lives in numpy arrays, and Python ints exist only for one slice at a time.
    """
    import heapq

    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and lengths.max() > max_length:
        raise ValueError(f"sample of {int(lengths.max())} tokens is longer than max_length {max_length}")
    order = np.argsort(-lengths, kind="stable")
    order = order[lengths[order] > 0]
    row_of = np.empty(len(order), dtype=np.int64)   # the row of the k-th placed sample
    by_room: dict[int, list[int]] = {}     # room left -> heap of row numbers with that room
    rooms: list[int] = []                  # sorted rooms that have a row
    n_rows = 0
    step = 1 << 16
    for start in range(0, len(order), step):
        rows = []
        for n in lengths[order[start:start + step]].tolist():
            at = bisect.bisect_left(rooms, n)
            if at < len(rooms):
                room = rooms[at]
                heap = by_room[room]
                row = heapq.heappop(heap)
                if not heap:
                    del by_room[room]
                    rooms.pop(at)
            else:
                room, row = max_length, n_rows
                n_rows += 1
            rows.append(row)
            left = room - n
            if left > 0:
                if left not in by_room:
                    by_room[left] = []
                    bisect.insort(rooms, left)
                heapq.heappush(by_room[left], row)
        row_of[start:start + len(rows)] = rows
    # Group by row, keeping each row's members in the order they were placed.
    members = order[np.argsort(row_of, kind="stable")]
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=n_rows), out=offsets[1:])
    return members, offsets


def pack(samples: Sequence[Encoded], max_length: int) -> list[dict]:
    """Best-fit-decreasing packing into sequences of at most max_length tokens.

    Returns dicts with ``input_ids``, ``labels`` and ``position_ids`` (lists of ints).
    Samples longer than max_length must have been truncated already.
    """
    members, offsets = pack_lengths([len(s.input_ids) for s in samples], max_length)
    return [_concat(samples[i] for i in members[a:b]) for a, b in zip(offsets.tolist(), offsets[1:].tolist())]


def unpacked(samples: Iterable[Encoded]) -> list[dict]:
    """One sequence per sample (pack: false)."""
    return [_concat([s]) for s in samples if s.input_ids]


def _concat(members: Iterable[Encoded]) -> dict:
    input_ids: list[int] = []
    labels: list[int] = []
    position_ids: list[int] = []
    for s in members:
        input_ids += s.input_ids
        labels += [IGNORE] + s.labels[1:]
        position_ids += range(len(s.input_ids))
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def collate(seqs: Sequence[dict], pad_id: int, attention_mask: bool = False, width: int | None = None,
            rows: int | None = None) -> dict:
    """Stack sequences into right-padded tensors.

    The padding gets position ids 0, 1, ... of its own, so transformers treats it as one
    more (fully masked) sample and no attention_mask is needed, with or without packing
    and for any batch size. ``attention_mask=True`` adds the usual 0/1 mask for code paths
    that need it; do not use it with packed rows (it switches the per-sample masking off).
    ``width`` pads every row to that many tokens and ``rows`` adds rows of padding up to
    that many (an epoch's short last batch): compiled layers then see one shape and never
    recompile mid-run. Padding rows train nothing.
    """
    import torch

    width = max(max(len(s["input_ids"]) for s in seqs), width or 0)
    n_rows = max(len(seqs), rows or 0)
    ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    labels = torch.full((n_rows, width), IGNORE, dtype=torch.long)
    pos = torch.arange(width).repeat(n_rows, 1)  # a padding row is one sample of its own
    mask = torch.zeros((n_rows, width), dtype=torch.long)
    for row, s in enumerate(seqs):
        n = len(s["input_ids"])
        ids[row, :n] = torch.as_tensor(s["input_ids"], dtype=torch.long)
        labels[row, :n] = torch.as_tensor(s["labels"], dtype=torch.long)
        pos[row, :n] = torch.as_tensor(s["position_ids"], dtype=torch.long)
        pos[row, n:] = torch.arange(width - n)
        mask[row, :n] = 1
    batch = {"input_ids": ids, "labels": labels, "position_ids": pos}
    if attention_mask:
        batch["attention_mask"] = mask
    return batch
