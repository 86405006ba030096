"""Packing encoded samples into fixed-budget sequences, and batching them for the model.

A packed sequence is several samples back to back, each with ``position_ids`` counting
from 0 again. That restart is what keeps samples apart: transformers (5.x) reads
``position_ids`` when no ``attention_mask`` is given and builds a block-diagonal causal
mask, one block per sample (``masking_utils.find_packed_sequence_indices``), for sdpa,
eager and flex attention. So a batch must carry **no attention_mask**, and the forward must run
without a KV cache (``use_cache=False``): with a cache object present, transformers skips
the detection and samples would see each other. tests/test_packing.py proves the logits of
a packed row equal those of each sample run alone.

The first label of every sample is masked: the model shifts labels by one, so that label
would otherwise be predicted from the previous sample's last token.
"""

from __future__ import annotations

import bisect
from typing import Iterable, Sequence

from .encode import IGNORE, Encoded


def pack_lengths(lengths: Sequence[int], max_length: int) -> tuple[list[int], list[int]]:
    """Best-fit-decreasing packing of samples of these lengths into rows of at most max_length.

    Returns (members, offsets): row r holds the samples ``members[offsets[r]:offsets[r + 1]]``,
    longest first. Zero-length samples are left out. Open rows are kept in one heap per
    room left, and the rooms that have a row in a sorted list (at most max_length of them),
    so a million samples pack in seconds; the tightest row that fits wins, the lowest row
    number among equals, as a plain best-fit scan would choose.
    """
    import heapq

    n_all = len(lengths)
    order = sorted(range(n_all), key=lengths.__getitem__, reverse=True)
    by_room: dict[int, list[int]] = {}     # room left -> heap of row numbers with that room
    rooms: list[int] = []                  # sorted rooms that have a row
    row_of: list[int] = []                 # per placed sample (in `order`), its row
    placed: list[int] = []
    n_rows = 0
    for i in order:
        n = int(lengths[i])
        if n == 0:
            continue
        if n > max_length:
            raise ValueError(f"sample of {n} tokens is longer than max_length {max_length}")
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
        placed.append(i)
        row_of.append(row)
        left = room - n
        if left > 0:
            if left not in by_room:
                by_room[left] = []
                bisect.insort(rooms, left)
            heapq.heappush(by_room[left], row)
    # Group by row, keeping each row's members in the order they were placed.
    grouped = sorted(range(len(placed)), key=row_of.__getitem__)
    members = [placed[k] for k in grouped]
    counts = [0] * n_rows
    for r in row_of:
        counts[r] += 1
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    return members, offsets


def pack(samples: Sequence[Encoded], max_length: int) -> list[dict]:
    """Best-fit-decreasing packing into sequences of at most max_length tokens.

    Returns dicts with ``input_ids``, ``labels`` and ``position_ids`` (lists of ints).
    Samples longer than max_length must have been truncated already.
    """
    members, offsets = pack_lengths([len(s.input_ids) for s in samples], max_length)
    return [_concat(samples[i] for i in members[a:b]) for a, b in zip(offsets, offsets[1:])]


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
