"""From data sources to training sequences: the counts and the packing plan.

``build_dataset`` is what training and ``prepare-data`` call: it returns the dataset's
on-disk store (token_cache.py builds it once and maps it after that) and its stats.
``check-data`` computes the same stats from the same encoder while it streams, so what it
reports is what training will see.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .contract.config import DataConfig
from .contract.errors import DataError
from .packing import pack_lengths

Progress = Callable[[int, int], None]


def length_histogram(lengths, max_length: int) -> list[dict]:
    """Counts per power-of-two length bucket up to max_length: [{lo, hi, count}, ...]."""
    edges = [0]
    hi = 32
    while hi < max_length:
        edges.append(hi)
        hi *= 2
    edges.append(max_length)
    his = np.asarray(edges[1:])
    # A sample goes to the first bucket whose top it does not exceed; longer ones to the last.
    where = np.minimum(np.searchsorted(his, np.asarray(lengths), side="left"), len(his) - 1)
    counts = np.bincount(where, minlength=len(his)) if len(where) else np.zeros(len(his), int)
    return [{"lo": lo, "hi": hi, "count": int(c)} for lo, hi, c in zip(edges, edges[1:], counts)]


def data_stats(lengths: np.ndarray, trained_counts: np.ndarray, truncated: np.ndarray, max_length: int,
               records: int) -> dict:
    """records, samples, tokens, trained_tokens, truncated, no_loss, length_histogram."""
    return {
        "records": int(records),
        "samples": int(len(lengths)),
        "tokens": int(np.asarray(lengths, dtype=np.int64).sum()),
        "trained_tokens": int(np.asarray(trained_counts, dtype=np.int64).sum()),
        "truncated": int(np.count_nonzero(truncated)),
        # samples whose answer lies wholly past max_length: nothing left to learn from them
        "no_loss": int(np.count_nonzero(np.asarray(trained_counts) == 0)),
        "length_histogram": length_histogram(lengths, max_length),
    }


def sequence_index(lengths: np.ndarray, trained_counts: np.ndarray, first_trained: np.ndarray,
                   data_cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which samples make up each training sequence: (members, offsets, trained per sequence).

    Samples with nothing to train on are left out. With ``pack`` the rest are packed
    best-fit-decreasing into max_length rows; without it each is a row of its own. A row's
    trained count leaves out the first token of each sample, whose label packing masks.
    """
    useful = np.flatnonzero(np.asarray(trained_counts) > 0)
    if not len(useful):
        raise DataError(f"none of the {len(lengths)} samples has a token to train on within "
                        f"max_length {data_cfg.max_length}", "raise data.max_length, or check the answers")
    if data_cfg.pack:
        members, offsets = pack_lengths(np.asarray(lengths)[useful], data_cfg.max_length)
        members = useful[members]
    else:
        members, offsets = useful, np.arange(len(useful) + 1, dtype=np.int64)
    per_sample = np.asarray(trained_counts, dtype=np.int64) - np.asarray(first_trained, dtype=np.int64)
    seq_trained = np.add.reduceat(per_sample[members], offsets[:-1])
    return members, offsets, seq_trained


class Tally:
    """Per-sample numbers of a stream of EncodedChunks (a few bytes per sample, never tokens)."""

    def __init__(self) -> None:
        self._parts: list[tuple] = []
        self.samples = 0

    def add(self, chunk) -> None:
        self._parts.append((chunk.lengths, chunk.trained_counts, chunk.first_trained, chunk.truncated))
        self.samples += len(chunk)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lengths, trained_counts, first_trained, truncated), one entry per sample."""
        dtypes = (np.int32, np.int32, np.uint8, bool)
        if not self._parts:
            return tuple(np.zeros(0, d) for d in dtypes)
        return tuple(np.concatenate(col) for col in zip(*self._parts))


def samples_until_problem(stream):
    """The stream's samples until it reports a bad record. After that the rest is only read
    (so every problem is counted for the error) and nothing more is tokenized: the run
    fails anyway, and tokenizing a million samples to say so would waste minutes."""
    for sample in stream:
        if stream.problems.total:
            break
        yield sample
    for _ in stream:
        pass


def build_dataset(data_cfg: DataConfig, stage: str, tokenizer, progress: Progress | None = None,
                  encoder=None, log=None, builder: bool = True, warn=None):
    """Return (store, stats): the dataset's TokenStore (``store[i]`` is sequence i as
    ``input_ids`` / ``labels`` / ``position_ids`` arrays; batch them with
    ``packing.collate``) and its stats (records, samples, tokens, trained_tokens, truncated,
    no_loss, sequences, length_histogram, template, formats). Uses the tokenized cache when
    it holds this data (``log`` says so), else tokenizes with ``progress(done, total)``.
    ``warn`` gets the data's warnings (skipped bad records, unfilled placeholders)."""
    from .token_cache import prepare

    prepared = prepare(data_cfg, stage, tokenizer, encoder, builder=builder, progress=progress, log=log,
                       warn=warn)
    return prepared.store, prepared.stats
