"""From data files to training sequences: read, validate, encode, pack, count.

``build_dataset`` is what training calls; ``check-data`` calls the same pieces so that
what it reports is what training will see.
"""

from __future__ import annotations

from typing import Callable

from .config import DataConfig
from .encode import Encoded, Encoder
from .errors import DataError
from .formats import load_samples
from .packing import pack, unpacked

Progress = Callable[[int, int], None]


def length_histogram(lengths: list[int], max_length: int) -> list[dict]:
    """Counts per power-of-two length bucket up to max_length: [{lo, hi, count}, ...]."""
    edges = [0]
    hi = 32
    while hi < max_length:
        edges.append(hi)
        hi *= 2
    edges.append(max_length)
    buckets = [{"lo": lo, "hi": hi, "count": 0} for lo, hi in zip(edges, edges[1:])]
    for n in lengths:
        for b in buckets:
            if n <= b["hi"]:
                b["count"] += 1
                break
        else:
            buckets[-1]["count"] += 1
    return buckets


def encoding_stats(encoded: list[Encoded], max_length: int, records: int) -> dict:
    lengths = [len(e.input_ids) for e in encoded]
    return {
        "records": records,
        "samples": len(encoded),
        "tokens": sum(lengths),
        "trained_tokens": sum(e.trained_tokens for e in encoded),
        "truncated": sum(e.truncated for e in encoded),
        # samples whose answer lies wholly past max_length: nothing left to learn from them
        "no_loss": sum(1 for e in encoded if e.trained_tokens == 0),
        "length_histogram": length_histogram(lengths, max_length),
    }


def build_dataset(data_cfg: DataConfig, stage: str, tokenizer, progress: Progress | None = None,
                  loaded=None, encoder: Encoder | None = None):
    """Return (sequences, stats).

    sequences: dicts of ``input_ids``, ``labels``, ``position_ids`` (lists of ints), packed
    to ``data_cfg.max_length`` when ``data_cfg.pack``; batch them with ``packing.collate``.
    stats: records, samples, tokens, trained_tokens, truncated, no_loss, sequences,
    length_histogram. ``progress(done, total)`` reports tokenization. ``loaded`` passes
    samples already read (training validates the files before torch loads); ``encoder``
    one the caller keeps (training renders its eval prompts with the same template).
    """
    loaded = loaded or load_samples(data_cfg.files, data_cfg.format)
    encoder = encoder or Encoder(tokenizer, template=data_cfg.template, system=data_cfg.system, stage=stage,
                                 max_length=data_cfg.max_length)
    encoded = encoder.encode_many(loaded.samples, progress=progress)
    stats = encoding_stats(encoded, data_cfg.max_length, loaded.records)
    useful = [e for e in encoded if e.trained_tokens]
    if not useful:
        raise DataError(f"none of the {len(encoded)} samples has a token to train on within "
                        f"max_length {data_cfg.max_length}", "raise data.max_length, or check the answers")
    sequences = pack(useful, data_cfg.max_length) if data_cfg.pack else unpacked(useful)
    stats["sequences"] = len(sequences)
    stats["template"] = encoder.describe()
    stats["formats"] = loaded.formats
    return sequences, stats
