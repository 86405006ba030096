"""Tokenize once: the tokenized, packed dataset cached on disk, keyed by what determines it.

The key is a digest of the data sources (path, size, mtime and a content hash of each
file), the tokenizer (its vocabulary, merges, special tokens and chat template), and the
settings that change the tokens: format, template, system prompt, stage, max_length,
packing. A re-launch, a ``--resume`` or a run after ``tunewiz prepare-data`` on unchanged
data maps the finished store (token_store.py) and goes straight to the model; anything in
the key that changes makes a new store, and the log says what changed.

One process per node builds; the others wait. The builder is the node's local rank 0 and
holds an exclusive ``flock`` on ``<key>.lock`` while it writes; the other ranks wait for
that lock (saying why), then map the same store. If the builder fails it leaves
``<key>.failed`` with its error, which every waiting rank raises as its own, so a bad
record gives the same one-line error on every rank instead of a hang.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .contract.config import DataConfig
from .dataset import Tally, data_stats, samples_until_problem, sequence_index
from .encode import Encoder
from .contract.errors import DataError
from .contract.formats import SampleStream
from .parallel_encode import available_cores, encode_stream
from .token_store import StoreWriter, TokenStore, open_store

# Bump when encoding or packing changes what a store holds for the same inputs.
PIPELINE_VERSION = 2   # 2: ShareGPT records' own system (and tools) keys are encoded
Log = Callable[[str], None]   # an info line; warnings go to a Log of their own
Progress = Callable[[int, int], None]


def cache_root(data_cfg: DataConfig) -> Path:
    """data.cache_dir, else $TUNEWIZ_DATA_CACHE, else the tunewiz cache's data/ folder."""
    if data_cfg.cache_dir:
        return Path(data_cfg.cache_dir).expanduser()
    env = os.environ.get("TUNEWIZ_DATA_CACHE")
    if env:
        return Path(env).expanduser()
    from .contract.cache_dirs import cache_root as tunewiz_cache

    return tunewiz_cache() / "data"


# Files of a model folder that decide how text becomes tokens (and the template around it).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja",
                   "chat_template.json")


class TokenizerSource:
    """A tokenizer that is loaded only when it is needed. A cache hit needs only the
    fingerprint, which for a model folder is a hash of its tokenizer files: re-launching on
    cached data then never imports transformers (seconds) just to find the cache."""

    def __init__(self, tokenizer=None, folder: Path | None = None, load: Callable | None = None):
        self._tokenizer, self.folder, self._load = tokenizer, folder, load

    def get(self):
        if self._tokenizer is None:
            self._tokenizer = self._load()
        return self._tokenizer

    def fingerprint(self) -> str:
        files = [self.folder / n for n in TOKENIZER_FILES] if self.folder else []
        files = [f for f in files if f.is_file()]
        if not files:
            return tokenizer_fingerprint(self.get())
        h = hashlib.sha256(b"files")
        code = sorted(self.folder.glob("*.py"))   # trust_remote_code tokenizers
        for f in [*files, *code]:
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything in a tokenizer that decides token ids and templates."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    template = getattr(tokenizer, "chat_template", None)
    h.update(json.dumps(template, sort_keys=True, default=str).encode())
    for tok in (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token):
        h.update(repr(tok).encode())
    specials = sorted(t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values())
    h.update(json.dumps(specials).encode())
    return h.hexdigest()


def ingredients(stream: SampleStream, tokenizer: TokenizerSource, data_cfg: DataConfig, stage: str) -> dict:
    """What the tokens depend on, each part separately (so a miss can say what changed)."""
    # Paths as absolute ones (hub ids as written): only to find this data's earlier caches when
    # saying what changed; the key itself leaves them out, since "sources" already
    # identifies the files by their resolved path and content, however they are spelled.
    paths = [os.path.abspath(f) if os.path.exists(f) else str(f) for f in data_cfg.files]
    parts = {"pipeline": PIPELINE_VERSION, "paths": paths,
             "sources": stream.fingerprint(), "tokenizer": tokenizer.fingerprint(),
             "format": data_cfg.format, "template": data_cfg.template or "auto", "system": data_cfg.system or "",
             "stage": stage, "max_length": data_cfg.max_length, "pack": bool(data_cfg.pack)}
    if data_cfg.skip_invalid:   # only when on, so the caches of every earlier run keep their keys
        parts["skip_invalid"] = True
    return parts


def cache_key(parts: dict) -> str:
    keyed = {k: v for k, v in parts.items() if k != "paths"}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class Prepared:
    store: TokenStore
    hit: bool          # True when an existing store was used

    @property
    def stats(self) -> dict:
        return self.store.stats

    @property
    def path(self) -> Path:
        return self.store.path


def prepare(data_cfg: DataConfig, stage: str, tokenizer, encoder: Encoder | None = None, *,
            builder: bool = True, progress: Progress | None = None, log: Log | None = None,
            num_proc: int | None = None, warn: Log | None = None) -> Prepared:
    """The dataset's store, from the cache or built now.

    ``tokenizer``: a tokenizer, or a TokenizerSource that loads one only to build.
    ``builder``: this process may build (a node's local rank 0); others wait for it.
    ``progress(done, total)`` reports tokenized samples (total is an estimate until the end).
    ``warn`` gets the data's warnings (skipped records, unfilled placeholders), from a
    cached store too; without it they go to ``log`` as "warning: ..." lines.
    """
    log = log or (lambda msg: None)
    warn = warn or (lambda msg: log(f"warning: {msg}"))
    prepared = _prepare(data_cfg, stage, tokenizer, encoder, builder, progress, log, num_proc)
    for line in prepared.stats.get("warnings", []):
        warn(line)
    return prepared


def _prepare(data_cfg: DataConfig, stage: str, tokenizer, encoder: Encoder | None, builder: bool,
             progress: Progress | None, log: Log, num_proc: int | None) -> Prepared:
    if not isinstance(tokenizer, TokenizerSource):
        tokenizer = TokenizerSource(tokenizer)
    stream = SampleStream(data_cfg.files, data_cfg.format, skip_invalid=data_cfg.skip_invalid)
    parts = ingredients(stream, tokenizer, data_cfg, stage)
    root = cache_root(data_cfg)
    dest = root / cache_key(parts)
    store = open_store(dest)
    if store is not None:
        log(f"using the tokenized cache {dest} ({_summary(store.stats)})")
        return Prepared(store, hit=True)
    _make_root(root)
    if not builder:
        return Prepared(_wait_for_builder(dest, log), hit=True)
    with _Lock(dest.with_name(dest.name + ".lock")):
        store = open_store(dest)    # built by another process while this one waited
        if store is not None:
            log(f"using the tokenized cache {dest} ({_summary(store.stats)})")
            return Prepared(store, hit=True)
        log(_why_new(root, parts, dest))
        failed = dest.with_name(dest.name + ".failed")
        encoder = encoder or Encoder.from_config(tokenizer.get(), data_cfg, stage)
        try:
            store = _build(stream, encoder, data_cfg, parts, dest, progress,
                           num_proc or data_cfg.num_proc or available_cores())
        except DataError as e:
            _write_failure(failed, e)
            raise
        failed.unlink(missing_ok=True)
        log(f"tokenized into {dest} ({_summary(store.stats)})")
        return Prepared(store, hit=False)


# ----------------------------------------------------------------------------- building

def _build(stream: SampleStream, encoder: Encoder, data_cfg: DataConfig, parts: dict, dest: Path,
           progress: Progress | None, num_proc: int) -> TokenStore:
    tmp = dest.with_name(f"{dest.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    hint = stream.rows_hint()
    writer = None
    try:
        for stale in dest.parent.glob(dest.name + ".tmp-*"):   # left by a killed builder (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if dest.exists():   # a published store that no longer reads whole: move it aside, then drop it
            aside = dest.with_name(f"{dest.name}.torn-{os.getpid()}")
            os.rename(dest, aside)
            shutil.rmtree(aside, ignore_errors=True)
        writer = StoreWriter(tmp)
        tally = Tally()
        for chunk in encode_stream(encoder, samples_until_problem(stream), num_proc):
            writer.append(chunk.ids, chunk.trained)
            tally.add(chunk)
            if progress is not None:   # an estimate until the end: never "done" before it is
                progress(tally.samples, max(hint or 0, tally.samples + 1))
        stream.raise_if_problems()
        if progress is not None:
            progress(tally.samples, tally.samples)
        lengths, counts, first, truncated = tally.arrays()
        members, offsets, seq_trained = sequence_index(lengths, counts, first, data_cfg)
        stats = data_stats(lengths, counts, truncated, data_cfg.max_length, stream.records)
        stats.update(sequences=len(offsets) - 1, template=encoder.describe(), formats=stream.formats,
                     filtered=stream.filtered, skipped=stream.problems.skipped, warnings=stream.warnings())
        meta = {"stats": stats, "ingredients": parts, "created": time.time(), "host": socket.gethostname()}
        try:
            writer.commit(dest, lengths, members, offsets, seq_trained, meta)
        except OSError:
            if open_store(dest) is None:
                raise
            # Another node published the same store first (a cache on shared storage): use it.
            writer.abort()
        writer = None
    except OSError as e:
        raise _disk_error(e, dest) from None
    finally:
        if writer is not None:
            writer.abort()
    store = open_store(dest)
    if store is None:
        raise DataError(f"the tokenized cache {dest} could not be read back after writing it",
                        "check the disk, or set data.cache_dir to another folder")
    return store


def _disk_error(e: OSError, dest: Path) -> DataError:
    import errno

    if e.errno == errno.ENOSPC:
        return DataError(f"no space left on the disk while writing the tokenized cache {dest.parent}",
                         "free space there, or set data.cache_dir (or TUNEWIZ_DATA_CACHE) to a disk with room")
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return DataError(f"cannot write the tokenized cache in {dest.parent} ({e.strerror})",
                         "set data.cache_dir (or TUNEWIZ_DATA_CACHE) to a folder you can write")
    return DataError(f"writing the tokenized cache {dest.parent} failed ({e.strerror or e})",
                     "check the disk, or set data.cache_dir to another folder")


def _make_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _disk_error(e, root / "x") from None


# ----------------------------------------------------------------------------- waiting

class _Lock:
    """An exclusive flock, held for the whole build, released by the kernel if we die."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = -1

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _wait_for_builder(dest: Path, log: Log, poll_s: float = 0.2, say_every_s: float = 30.0) -> TokenStore:
    """A rank that does not build: wait until local rank 0 has published the store."""
    lock_path = dest.with_name(dest.name + ".lock")
    failed = dest.with_name(dest.name + ".failed")
    started = time.time()
    said = 0.0
    while True:
        store = open_store(dest)
        if store is not None:
            log(f"using the tokenized cache {dest}, built by local rank 0")
            return store
        if failed.is_file() and failed.stat().st_mtime >= started - 1:
            raise _read_failure(failed)
        holder = _lock_holder(lock_path)
        if holder:
            if not said:
                log(f"waiting for local rank 0 ({holder}) to tokenize the data into {dest}")
                said = time.time()
            fd = os.open(lock_path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)   # blocks until the builder is done (or dead)
            finally:
                os.close(fd)
            store = open_store(dest)
            if store is not None:
                log(f"using the tokenized cache {dest}, built by local rank 0")
                return store
            if failed.is_file():
                raise _read_failure(failed)
            raise DataError("local rank 0 stopped before the tokenized data was ready",
                            "see logs/rank0.log in the run directory")
        if time.time() - max(said, started) > say_every_s:
            log(f"still waiting for local rank 0 to start tokenizing into {dest}")
            said = time.time()
        time.sleep(poll_s)


def _lock_holder(path: Path) -> str:
    """Who holds the build lock ("host pid"), or "" when nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return ""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ""
    finally:
        os.close(fd)


def _write_failure(path: Path, e: DataError) -> None:
    try:
        path.write_text(json.dumps({"msg": e.msg, "hint": e.hint, "where": e.where,
                                    "problems": getattr(e, "problems", None)}), encoding="utf-8")
    except OSError:
        pass


def _read_failure(path: Path) -> DataError:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return DataError("local rank 0 failed to tokenize the data", "see logs/rank0.log in the run directory")
    return DataError(info.get("msg", "tokenizing failed"), info.get("hint", ""))


# ----------------------------------------------------------------------------- messages

def _summary(stats: dict) -> str:
    return (f"{stats['samples']:,} samples, {stats['sequences']:,} sequences, "
            f"{stats['tokens']:,} tokens")


_WHAT = {"sources": "the data files changed", "tokenizer": "the tokenizer changed",
         "template": "data.template changed", "system": "data.system changed", "stage": "stage changed",
         "max_length": "data.max_length changed", "pack": "data.pack changed", "format": "data.format changed",
         "skip_invalid": "data.skip_invalid changed", "pipeline": "this version of tunewiz encodes differently"}


def _why_new(root: Path, parts: dict, dest: Path) -> str:
    """Say why this data is tokenized again, from the newest cache of the same files."""
    newest, newest_t = None, 0.0
    for meta_path in sorted(root.glob("*/meta.json"))[:500]:
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        old = meta.get("ingredients", {})
        if old.get("paths") == parts["paths"] and meta.get("created", 0) > newest_t:
            newest, newest_t = old, meta["created"]
    if newest is None:
        return f"tokenizing the data (first time for these files); caching it in {dest}"
    changed = [_WHAT[k] for k in _WHAT if newest.get(k) != parts.get(k)]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(newest_t))
    return f"tokenizing the data again: {', '.join(changed) or 'the settings changed'} since the cache of {when}"
