"""What an entry of ``data.files`` names, and how its records are read. Torch-free.

An entry is one of:
- a data file, by its extension: ``.parquet``, ``.arrow`` (IPC file or stream), ``.csv``,
  ``.tsv``; anything else is read as JSON or JSONL;
- a folder written by ``datasets``' ``save_to_disk``: a Dataset (``state.json``,
  ``data-*.arrow``), or a DatasetDict (``dataset_dict.json``) whose ``train`` split is used;
- a folder of data files: every supported file directly in it, in name order;
- a Hugging Face hub dataset id, ``owner/name[/config][:split]`` (split default train),
  when no such path exists; it is loaded with ``datasets`` (and its cache).

Each entry resolves to :class:`Source` s (one per file of a folder of files, else one),
each made of :class:`Part` s (the shards of a save_to_disk folder) that yield
``(where, record)``. A source's format is told from its first record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import json_records, table_files
from .errors import DataError

DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow", ".csv", ".tsv")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(?:/[\w.-]+)?(?::[\w.-]+)?")  # owner/name[/config][:split]
WHOLE_HASH_LIMIT = 64 << 20       # files up to this size are hashed whole for the cache key,
EDGE_HASH_BYTES = 4 << 20         # larger ones by their first and last 4 MiB
HASH_CHUNK = 1 << 20


class Part:
    """One readable piece of a source: a file, or a hub dataset."""

    name: str

    def records(self, problems) -> Iterator[tuple[str, Any]]:
        raise NotImplementedError

    def rows_hint(self) -> int:
        raise NotImplementedError

    def identity(self) -> dict:
        raise NotImplementedError


class FilePart(Part):
    def __init__(self, path: Path, name: str):
        self.path, self.name = path, name
        self.kind = path.suffix.lower()

    def records(self, problems) -> Iterator[tuple[str, Any]]:
        named = Path(self.name)  # records name the file as the user wrote it
        if self.kind == ".parquet":
            return table_files.parquet_records(named)
        if self.kind == ".arrow":
            return table_files.arrow_records(named)
        if self.kind in (".csv", ".tsv"):
            return table_files.csv_records(named, problems, delimiter="\t" if self.kind == ".tsv" else ",")
        return json_records.iter_json_records(named, problems)

    def rows_hint(self) -> int:
        if self.kind == ".parquet":
            return table_files.parquet_rows_hint(self.path)
        if self.kind == ".arrow":
            return table_files.arrow_rows_hint(self.path)
        if self.kind in (".csv", ".tsv"):
            return table_files.csv_rows_hint(self.path)
        return json_records.json_rows_hint(self.path)

    def identity(self) -> dict:
        return file_identity(self.path)


class HubPart(Part):
    """A hub dataset split, downloaded into (or found in) the ``datasets`` cache once."""

    def __init__(self, entry: str):
        self.name = entry
        path, _, split = entry.partition(":")
        owner, name, *config = path.split("/")
        self.repo, self.config, self.split = f"{owner}/{name}", (config or [None])[0], split or "train"
        self._dataset = None

    def dataset(self):
        if self._dataset is None:
            self._dataset = _load_hub(self.repo, self.config, self.split, self.name)
        return self._dataset

    def records(self, problems) -> Iterator[tuple[str, Any]]:
        tables = self.dataset().with_format("arrow").iter(batch_size=table_files.BATCH_ROWS)
        return table_files.rows_of(self.name, tables)

    def rows_hint(self) -> int:
        return self.dataset().num_rows

    def identity(self) -> dict:
        ds = self.dataset()
        return {"hub": self.repo, "config": self.config, "split": self.split,
                "fingerprint": getattr(ds, "_fingerprint", ""),
                "version": str(getattr(ds.info, "version", "") or ""),
                "files": [file_identity(Path(c["filename"])) for c in ds.cache_files]}


@dataclass
class Source:
    name: str          # what ``formats`` is keyed by: the entry, or a file of a folder of files
    parts: list[Part]


def resolve(entry: str) -> list[Source]:
    """The sources an entry of data.files names; DataError when it names none."""
    if not entry.strip():   # Path("") is the current folder: never read that by accident
        raise DataError("an empty path names no data", "give a data file, folder or hub id")
    path = Path(entry)
    try:
        if path.is_dir():
            return _folder(entry, path)
        if path.is_file():
            return [Source(entry, [FilePart(path, entry)])]
        exists = path.exists()
    except OSError as e:   # a folder on the way that this user may not enter
        raise DataError(f"cannot reach it ({e.strerror})",
                        "check the permissions of the folders on its path", where=entry) from None
    if exists:
        raise DataError("not a file", "pass data files or folders", where=entry)
    if _looks_like_hub_id(entry):
        return [Source(entry, [HubPart(entry)])]
    raise DataError("no such file", "check the path", where=entry)


def _looks_like_hub_id(entry: str) -> bool:
    # "data/missing.json" or "data/x" next to a local data/ folder are missing paths.
    return (HUB_ID.fullmatch(entry) is not None and Path(entry.partition(":")[0]).suffix.lower()
            not in DATA_SUFFIXES and not Path(entry.split("/")[0]).exists())


def _folder(entry: str, path: Path) -> list[Source]:
    if (path / "dataset_dict.json").is_file():
        return [Source(entry, _dataset_dict_train(entry, path))]
    if (path / "state.json").is_file() or (path / "dataset_info.json").is_file():
        return [Source(entry, _saved_dataset(entry, path))]
    files = sorted(p.name for p in path.iterdir()
                   if p.suffix.lower() in DATA_SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not files:
        raise DataError("no data files in this folder",
                        f"put {', '.join(DATA_SUFFIXES)} files in it (subfolders are not read), "
                        "or pass the files themselves", where=entry)
    return [Source(os.path.join(entry, f), [FilePart(path / f, os.path.join(entry, f))]) for f in files]


def _dataset_dict_train(entry: str, path: Path) -> list[Part]:
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError("not a readable save_to_disk folder (dataset_dict.json)",
                        "save the dataset again with save_to_disk", where=entry) from None
    if "train" not in splits:
        others = ", ".join(map(str, splits)) or "none"
        example = os.path.join(entry, str(splits[0])) if splits else os.path.join(entry, "SPLIT")
        raise DataError(f"this DatasetDict has no train split (splits: {others})",
                        f"pass the split's folder to use, e.g. {example}", where=entry)
    return _saved_dataset(os.path.join(entry, "train"), path / "train")


def _saved_dataset(entry: str, path: Path) -> list[Part]:
    """The Arrow shards of a save_to_disk Dataset folder, in the order state.json lists them."""
    names: list[str] = []
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        names = [f["filename"] for f in state.get("_data_files", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no usable state.json: the shards by their names
    if not names:
        names = sorted(p.name for p in path.glob("data-*.arrow"))
    if not names:
        raise DataError("a save_to_disk folder without data-*.arrow files",
                        "save the dataset again with save_to_disk", where=entry)
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise DataError(f"a save_to_disk folder without its shard {missing[0]}",
                        "copy the whole folder, or save the dataset again", where=entry)
    return [FilePart(path / n, os.path.join(entry, n)) for n in names]


# --------------------------------------------------------------------------- hub

def _load_hub(repo: str, config: str | None, split: str, name: str):
    try:
        import datasets
    except ImportError:
        raise DataError("reading a hub dataset needs the datasets package", "pip install datasets",
                        where=name) from None
    try:
        return datasets.load_dataset(repo, config, split=split)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds; each becomes one line
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if _offline() or isinstance(e, ConnectionError):
            reason = "offline: HF_HUB_OFFLINE is set" if _offline() else reason
            args = ", ".join([repr(repo), *([repr(config)] if config else []), f"split={split!r}"])
            raise DataError(
                f"cannot download the hub dataset ({reason})",
                f"on a machine with network run: python -c \"import datasets; datasets.load_dataset({args})"
                ".save_to_disk('DIR')\", copy DIR here and pass the folder", where=name,
            ) from None
        raise DataError(f"cannot load the hub dataset ({reason})",
                        "check the id, the config and the split: owner/name[/config][:split]", where=name) from None


def _offline() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


# --------------------------------------------------------------------------- cache keys

def file_identity(path: Path) -> dict:
    """A file's resolved path, size, mtime and a hash of its content (of its ends when large)."""
    try:
        st = path.stat()
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            if st.st_size <= WHOLE_HASH_LIMIT:
                for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
                    digest.update(chunk)
            else:
                digest.update(f.read(EDGE_HASH_BYTES))
                f.seek(-EDGE_HASH_BYTES, os.SEEK_END)
                digest.update(f.read(EDGE_HASH_BYTES))
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror})", "check the file's permissions", where=str(path)) from None
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": digest.hexdigest()}
