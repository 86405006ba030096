"""Reading Parquet, Arrow and CSV/TSV files as records, a batch at a time.

Parquet and Arrow are read with pyarrow in record batches, and only one slice of
BATCH_ROWS rows is turned into Python objects at a time, so memory stays flat in the file
size. Their records are named ``file:row N`` (1-based). CSV/TSV is read with the csv
module, line by line, so that problems can name ``file:line`` even where a quoted cell
spans lines; every cell is text, and a cell of a chat column holding a JSON list is parsed.

pyarrow is imported only when such a file is read: JSON reading and the TUI stay light.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import json_records
from .errors import DataError

BATCH_ROWS = 1024                 # rows turned into Python objects at a time
PARQUET_BUFFER = 8 << 20          # read Parquet column chunks through a buffer of this size
ARROW_FILE_MAGIC = b"ARROW1"      # the IPC file format; the stream format has no magic
# Chat columns may hold their turns as a JSON list in a CSV cell.
JSON_COLUMNS = ("messages", "conversation", "conversations")
CSV_FIELD_LIMIT = 2**31 - 1       # the csv module's default (128 KiB) is below a long conversation


def pyarrow():
    try:
        import pyarrow as pa
    except ImportError:
        raise DataError("reading Parquet or Arrow files needs pyarrow",
                        "install the datasets package (pip install datasets)") from None
    return pa


# --------------------------------------------------------------------------- Parquet / Arrow

def parquet_records(path: Path) -> Iterator[tuple[str, Any]]:
    return rows_of(str(path), _guarded(_parquet_batches(path), str(path), "Parquet"))


def parquet_rows_hint(path: Path) -> int:
    pa = pyarrow()
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(str(path)) as parquet:
            return parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        raise _unreadable(str(path), "Parquet", e) from None


def arrow_records(path: Path) -> Iterator[tuple[str, Any]]:
    return rows_of(str(path), _guarded(_arrow_batches(path), str(path), "Arrow"))


def arrow_rows_hint(path: Path) -> int:
    pa = pyarrow()
    # Memory-mapped and zero-copy: counting rows reads the batches' headers, not their data.
    try:
        with pa.memory_map(str(path)) as source:
            if source.read(len(ARROW_FILE_MAGIC)) == ARROW_FILE_MAGIC:
                source.seek(0)
                reader = pa.ipc.open_file(source)
                # count_rows() is pyarrow 26's; a batch from the map is its header and views.
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            source.seek(0)
            return sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    except (pa.ArrowException, OSError) as e:
        raise _unreadable(str(path), "Arrow", e) from None


def _parquet_batches(path: Path):
    import pyarrow.parquet as pq

    # A buffered read without pre-buffering reads a row group's pages as they are decoded,
    # not all of its column chunks at once.
    with pq.ParquetFile(str(path), buffer_size=PARQUET_BUFFER, pre_buffer=False) as parquet:
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False)


def _arrow_batches(path: Path):
    pa = pyarrow()
    # Plain reads, not a memory map: mapped pages would count as the process's memory.
    with pa.OSFile(str(path)) as source:
        if source.read(len(ARROW_FILE_MAGIC)) == ARROW_FILE_MAGIC:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        else:
            source.seek(0)  # `datasets.save_to_disk` writes the stream format
            yield from pa.ipc.open_stream(source)


def _guarded(batches, name: str, kind: str):
    """The batches, with pyarrow's errors (a torn or foreign file) as one-line DataErrors."""
    pa = pyarrow()
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:
            raise _unreadable(name, kind, e) from None
        yield batch


def _unreadable(name: str, kind: str, e: Exception) -> DataError:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return DataError(f"not a readable {kind} file ({reason})",
                     f"write it again, or check that it is a {kind} file", where=name)


def rows_of(name: str, batches) -> Iterator[tuple[str, Any]]:
    """("name:row N", record) for every row of pyarrow record batches or tables."""
    row = 0
    for batch in batches:
        for start in range(0, batch.num_rows, BATCH_ROWS):
            for record in batch.slice(start, BATCH_ROWS).to_pylist():
                row += 1
                yield f"{name}:row {row}", _without_nulls(record)


def _without_nulls(record: dict) -> dict:
    # A column stands in every row; a null in it is a key that JSONL would have left out.
    return {k: v for k, v in record.items() if v is not None}


# --------------------------------------------------------------------------- CSV / TSV

def csv_records(path: Path, problems, delimiter: str = ",") -> Iterator[tuple[str, Any]]:
    """("file:line", record) per row; the first row names the columns."""
    name = str(path)
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(_text_lines(path), delimiter=delimiter)
    header: list[str] | None = None
    last = 0  # the line the previous row ended on: a row starts on the next one
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as e:
            raise DataError(f"not valid CSV ({e})", "check the quoting", where=f"{name}:{last + 1}") from None
        if cells is None:
            break
        line, last = last + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            continue
        where = f"{name}:{line}"
        if len(cells) != len(header):
            problems.record(where, f"{len(cells)} cells, the header has {len(header)} (check the quoting)")
            continue
        try:
            record = _json_cells(dict(zip(header, cells)))
        except ValueError as e:
            problems.record(where, str(e))
            continue
        yield where, record
    if header is None:
        raise DataError("the file is empty", "add a header row and one row per record", where=name)


def csv_rows_hint(path: Path) -> int:
    lines = last = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            lines, last = lines + chunk.count(b"\n"), chunk
    return max(lines + (bool(last) and not last.endswith(b"\n")) - 1, 0)


def _json_cells(record: dict) -> dict:
    for key in JSON_COLUMNS:
        value = record.get(key)
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            try:
                record[key] = json_records.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"{key} is not valid JSON ({e.msg})") from None
    return record


def _text_lines(path: Path) -> Iterable[str]:
    """The file's lines as text, an encoding error naming its byte."""
    name = str(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror})", "check the file's permissions", where=name) from None
    with f:
        offset = 0
        for number, raw in enumerate(f, 1):
            skip = 3 if number == 1 and raw.startswith(b"\xef\xbb\xbf") else 0  # a byte-order mark
            try:
                yield raw[skip:].decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"not UTF-8 text ({e.reason} at byte {offset + skip + e.start})",
                                "save the file as UTF-8", where=name) from None
            offset += len(raw)
