"""Tokenized, packed data on disk: compact arrays, memory-mapped, written once.

A store is one folder:

    input_ids.bin      int32, every sample's tokens back to back (in reading order)
    trained.bin        uint8, 1 where the token is learned (the encoder's loss mask)
    samples.npy        int64 [n_samples + 1], where each sample starts in input_ids.bin
    seq_samples.npy    int32, sample indices in training-sequence order
    seq_offsets.npy    int64 [n_seqs + 1], where each sequence starts in seq_samples.npy
    seq_trained.npy    int32 [n_seqs], tokens each sequence trains on (the loss normaliser)
    meta.json          stats, what the store was built from, and every file's size

About 5 bytes per token on disk and almost nothing in RAM: training maps the files and
builds a micro-batch's rows from a few slices (``sequence``). Python lists of ints took
about 93 bytes per token.

A store becomes visible only whole: it is written into a temporary folder beside its final
name, every file is flushed to disk, and one ``rename`` publishes it. ``meta.json`` is the
last file written and records every file's size, so a folder torn by a crash, a kill or a
full disk is never opened (``open_store`` refuses it and the caller builds anew).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .encode import IGNORE

FORMAT_VERSION = 1
META = "meta.json"
_ARRAYS = ("samples.npy", "seq_samples.npy", "seq_offsets.npy", "seq_trained.npy")
_STREAMS = ("input_ids.bin", "trained.bin")


class TornStore(Exception):
    """A folder that is not a complete store (a crash or a full disk while writing it)."""


class StoreWriter:
    """Appends encoded samples to a temporary folder; ``commit`` publishes it whole."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True)
        self._ids = open(self.tmp / "input_ids.bin", "wb")
        self._trained = open(self.tmp / "trained.bin", "wb")

    def append(self, ids: np.ndarray, trained: np.ndarray) -> None:
        """A chunk of samples: their tokens and masks back to back."""
        self._ids.write(np.ascontiguousarray(ids, dtype=np.int32).tobytes())
        self._trained.write(np.ascontiguousarray(trained, dtype=np.uint8).tobytes())

    def commit(self, dest: Path, lengths: np.ndarray, seq_samples: np.ndarray, seq_offsets: np.ndarray,
               seq_trained: np.ndarray, meta: dict) -> Path:
        """Write the index (``lengths``: every appended sample's, in order) and meta, flush
        everything to disk, and rename into ``dest``."""
        for f in (self._ids, self._trained):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        arrays = {"samples.npy": offsets, "seq_samples.npy": seq_samples.astype(np.int32),
                  "seq_offsets.npy": seq_offsets.astype(np.int64), "seq_trained.npy": seq_trained.astype(np.int32)}
        for name, arr in arrays.items():
            with open(self.tmp / name, "wb") as f:
                np.save(f, arr)
                f.flush()
                os.fsync(f.fileno())
        meta = {**meta, "format_version": FORMAT_VERSION,
                "files": {name: (self.tmp / name).stat().st_size for name in (*_STREAMS, *_ARRAYS)}}
        with open(self.tmp / META, "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.rename(self.tmp, dest)   # atomic on one filesystem: the store appears whole or not at all
        _fsync_dir(dest.parent)
        return dest

    def abort(self) -> None:
        for f in (self._ids, self._trained):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


class TokenStore:
    """A published store, memory-mapped read-only. ``store[i]`` is training sequence i."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = _read_meta(self.path)
        for name, size in self.meta["files"].items():
            p = self.path / name
            if not p.is_file() or p.stat().st_size != size:
                raise TornStore(f"{p} is missing or has the wrong size")
        self.input_ids = _map(self.path / "input_ids.bin", np.int32)
        self.trained = _map(self.path / "trained.bin", np.uint8)
        self.sample_offsets = np.load(self.path / "samples.npy", mmap_mode="r")
        self.seq_samples = np.load(self.path / "seq_samples.npy", mmap_mode="r")
        self.seq_offsets = np.load(self.path / "seq_offsets.npy", mmap_mode="r")
        self.seq_trained = np.load(self.path / "seq_trained.npy", mmap_mode="r")

    @property
    def stats(self) -> dict:
        return self.meta["stats"]

    def __len__(self) -> int:
        return len(self.seq_offsets) - 1

    def members(self, i: int) -> np.ndarray:
        return self.seq_samples[self.seq_offsets[i]:self.seq_offsets[i + 1]]

    def seq_length(self, i: int) -> int:
        m = self.members(i)
        return int((self.sample_offsets[m + 1] - self.sample_offsets[m]).sum())

    def sample(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One sample's token ids and labels (IGNORE where nothing is learned)."""
        a, b = self.sample_offsets[k], self.sample_offsets[k + 1]
        ids = np.asarray(self.input_ids[a:b], dtype=np.int64)
        return ids, np.where(self.trained[a:b] != 0, ids, IGNORE)

    def __getitem__(self, i: int) -> dict:
        """Sequence i: its samples back to back, positions restarting at 0 for each, and the
        first label of each sample masked (it would be predicted from the previous sample)."""
        parts = [self.sample(int(k)) for k in self.members(i)]
        ids = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        lengths = np.array([len(p[0]) for p in parts])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        labels[starts] = IGNORE
        positions = np.arange(len(ids)) - np.repeat(starts, lengths)
        return {"input_ids": ids, "labels": labels, "position_ids": positions}

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def open_store(path: Path) -> TokenStore | None:
    """The store at ``path``, or None when there is none or it is not whole."""
    if not (Path(path) / META).is_file():
        return None
    try:
        return TokenStore(path)
    except (TornStore, OSError, ValueError, KeyError):
        return None


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TornStore(f"{path / META}: {e}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise TornStore(f"{path}: store format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    return meta


def _map(path: Path, dtype) -> np.ndarray:
    # np.memmap refuses empty files; a store without tokens has nothing to map.
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
