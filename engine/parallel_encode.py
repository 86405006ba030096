"""Encoding a stream of samples on several processes, in order, with bounded memory.

Reading (and validating) stays in the calling process; chunks of samples go to worker
processes that hold their own copy of the Encoder and send back compact int32 / uint8
arrays. At most a few chunks per worker are in flight, so a million-sample file never sits
in memory as Python objects, and results come back in reading order, so the tokens are
the same whatever ``num_proc`` is.

Workers are forked: they inherit the tokenizer instead of loading it again, and they touch
nothing but the tokenizer and numpy. A tiny dataset (one chunk) never starts a worker.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .encode import IGNORE, Encoder
from .contract.errors import DataError
from .contract.formats import Sample

CHUNK = 256            # samples per task: large enough to batch the tokenizer, small enough to stream
IN_FLIGHT_PER_WORKER = 3


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class EncodedChunk:
    ids: np.ndarray          # int32, the chunk's samples back to back
    trained: np.ndarray      # uint8, the loss mask
    lengths: np.ndarray      # int32 per sample
    trained_counts: np.ndarray   # int32 per sample, before packing masks first labels
    first_trained: np.ndarray    # uint8 per sample: is its first token trained (packing masks it)
    truncated: np.ndarray    # bool per sample

    def __len__(self) -> int:
        return len(self.lengths)


def encode_chunk(encoder: Encoder, samples: list[Sample]) -> EncodedChunk:
    encoded = encoder.encode_many(samples, chunk=len(samples) or 1)
    lengths = np.fromiter((len(e.input_ids) for e in encoded), dtype=np.int32, count=len(encoded))
    total = int(lengths.sum())
    ids = np.fromiter((t for e in encoded for t in e.input_ids), dtype=np.int32, count=total)
    labels = np.fromiter((t for e in encoded for t in e.labels), dtype=np.int64, count=total)
    trained = (labels != IGNORE).astype(np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    nonempty = lengths > 0
    counts = np.zeros(len(encoded), np.int32)
    first = np.zeros(len(encoded), np.uint8)
    if total:
        # reduceat over the non-empty samples only (it would repeat a value at empty ones)
        counts[nonempty] = np.add.reduceat(trained.astype(np.int32), starts[nonempty])
        first[nonempty] = trained[starts[nonempty]]
    truncated = np.fromiter((e.truncated for e in encoded), dtype=bool, count=len(encoded))
    return EncodedChunk(ids, trained, lengths, counts, first, truncated)


# ----------------------------------------------------------------------------- workers

_worker_encoder: Encoder | None = None


def _init_worker(encoder: Encoder) -> None:
    global _worker_encoder
    # One process per core already; the tokenizer's own threads would only oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_encoder = encoder


def _encode_in_worker(samples: list[Sample]):
    try:
        return encode_chunk(_worker_encoder, samples)
    except DataError as e:   # sent back as plain values: the exception's signature does not pickle
        return ("data-error", e.msg, e.hint, e.where)


def _unwrap(result):
    if isinstance(result, tuple) and result and result[0] == "data-error":
        _, msg, hint, where = result
        err = DataError(msg.removeprefix(f"{where}: ") if where else msg, hint, where=where)
        raise err
    return result


def _chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def encode_stream(encoder: Encoder, samples: Iterable[Sample], num_proc: int = 1,
                  chunk: int = CHUNK) -> Iterator[EncodedChunk]:
    """Yield EncodedChunks in the order of ``samples``. With ``num_proc`` > 1, chunks after
    the first are encoded by that many worker processes while the caller reads on."""
    chunks = _chunks(samples, chunk)
    first = next(chunks, None)
    if first is None:
        return
    if num_proc <= 1:
        yield encode_chunk(encoder, first)
        for c in chunks:
            yield encode_chunk(encoder, c)
        return
    second = next(chunks, None)
    if second is None:    # one chunk: a worker would cost more than it saves
        yield encode_chunk(encoder, first)
        return
    ctx = multiprocessing.get_context("fork")
    # Forked workers share the parent's pages until something writes to them; the cyclic GC
    # walking every inherited object would copy most of them (hundreds of MB per worker).
    # Frozen objects are left alone by the GC.
    gc.collect()
    gc.freeze()
    pool = ProcessPoolExecutor(max_workers=num_proc, mp_context=ctx, initializer=_init_worker,
                               initargs=(encoder,))
    pending: deque = deque()
    try:
        for c in (first, second):
            pending.append(pool.submit(_encode_in_worker, c))
        for c in chunks:
            pending.append(pool.submit(_encode_in_worker, c))
            while len(pending) >= num_proc * IN_FLIGHT_PER_WORKER:
                yield _unwrap(_result(pending.popleft()))
        while pending:
            yield _unwrap(_result(pending.popleft()))
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()


def _result(future):
    try:
        return future.result()
    except BrokenProcessPool:
        raise DataError("a tokenizing process died (out of memory?)",
                        "lower data.num_proc, or free memory on this machine") from None
