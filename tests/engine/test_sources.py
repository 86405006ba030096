"""Every data source a Hugging Face user has gives the samples JSONL of the same records gives.

The files are real: written here with pyarrow, csv and datasets, then read back.
"""

from __future__ import annotations

import csv
import json
import os
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support.cli import run_cli
from tunewiz.engine.contract import json_records
from tunewiz.engine.contract.errors import DataError
from tunewiz.engine.contract.formats import DataErrors, SampleStream, load_samples

OPENAI = [{"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": f"Question {i}?"},
                        {"role": "assistant", "content": f"Answer {i},\nwith a second line."}]} for i in range(5)]
ALPACA = [{"instruction": "Translate", "input": "hallo", "output": "hello"},
          {"instruction": "Say hi", "output": "hi"},                      # no input: a null column cell
          {"instruction": "Nothing", "input": "", "output": "<nooutput>"},
          {"instruction": 'Quote "this", please', "input": "a,b\nc", "output": "ok"}]
SETS = {"openai": OPENAI, "alpaca": ALPACA}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def write_parquet(path, records):
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=2)  # several row groups
    return str(path)


def write_arrow(path, records, stream: bool):
    table = pa.Table.from_pylist(records)
    with pa.OSFile(str(path), "wb") as sink:
        writer = (pa.ipc.new_stream if stream else pa.ipc.new_file)(sink, table.schema)
        writer.write_table(table, max_chunksize=2)
        writer.close()
    return str(path)


def write_csv(path, records, delimiter=","):
    columns = list(dict.fromkeys(k for r in records for k in r))
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(columns)
        for r in records:
            w.writerow([json.dumps(v) if isinstance(v, list) else v if v is not None else "" for v in
                        (r.get(c) for c in columns)])
    return str(path)


def save_to_disk(path, records, split=None):
    import datasets

    ds = datasets.Dataset.from_list(records)
    (datasets.DatasetDict({split: ds, "test": ds}) if split else ds).save_to_disk(str(path))
    return str(path)


def samples(loaded):
    return [(s.text, s.messages) for s in loaded.samples]


WRITERS = {
    "parquet": lambda d, r: write_parquet(d / "d.parquet", r),
    "arrow-file": lambda d, r: write_arrow(d / "d.arrow", r, stream=False),
    "arrow-stream": lambda d, r: write_arrow(d / "d.arrow", r, stream=True),
    "csv": lambda d, r: write_csv(d / "d.csv", r),
    "tsv": lambda d, r: write_csv(d / "d.tsv", r, delimiter="\t"),
    "save_to_disk": lambda d, r: save_to_disk(d / "saved", r),
    "save_to_disk-dict": lambda d, r: save_to_disk(d / "saved", r, split="train"),
}


@pytest.mark.parametrize("kind", WRITERS)
@pytest.mark.parametrize("fmt", SETS)
def test_every_source_gives_the_samples_of_jsonl(tmp_path, kind, fmt):
    records = SETS[fmt]
    want = load_samples([write_jsonl(tmp_path / "d.jsonl", records)])
    source = WRITERS[kind](tmp_path, records)
    got = load_samples([source])
    assert samples(got) == samples(want)
    assert (got.formats, got.records, got.filtered) == ({source: fmt}, want.records, want.filtered)
    first = got.samples[0].source
    if kind in ("csv", "tsv"):
        assert first == f"{source}:2"          # the header is line 1
    elif kind.startswith("save_to_disk"):
        split = "train/" if kind.endswith("dict") else ""
        assert first == f"{source}/{split}data-00000-of-00001.arrow:row 1"
    else:
        assert [s.source for s in got.samples][:2] == [f"{source}:row 1", f"{source}:row 2"]


def test_a_folder_of_files_reads_each_in_name_order(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    write_parquet(folder / "b.parquet", ALPACA)
    write_jsonl(folder / "a.jsonl", OPENAI)
    (folder / "README.md").write_text("not data")
    (folder / ".hidden.json").write_text("[]")
    got = load_samples([str(folder)])
    want = load_samples([write_jsonl(tmp_path / "o.jsonl", OPENAI), write_jsonl(tmp_path / "a.jsonl", ALPACA)])
    assert samples(got) == samples(want)
    assert got.formats == {f"{folder}/a.jsonl": "openai", f"{folder}/b.parquet": "alpaca"}


def test_csv_names_the_line_a_row_starts_on(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('instruction,output\n"two\nlines",ok\n\n"q",\n"x","y","z"\n', encoding="utf-8")
    with pytest.raises(DataErrors) as e:
        load_samples([str(f)])
    assert e.value.problems == [f"{f}:6: 3 cells, the header has 2 (check the quoting)"]
    f.write_text('messages\n"[{""role"": ""user"", ""content"": ""q""}"\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_samples([str(f)])
    assert e.value.msg.startswith(f"{f}:2: messages is not valid JSON (")


def test_csv_with_a_byte_order_mark_and_a_bad_byte(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes(b"\xef\xbb\xbftext\nhello\n")
    assert [s.text for s in load_samples([str(f)]).samples] == ["hello"]
    f.write_bytes(b"text\nhello\nbad \xff\n")
    with pytest.raises(DataError) as e:
        load_samples([str(f)])
    assert e.value.msg == f"{f}: not UTF-8 text (invalid start byte at byte 15)"


# --------------------------------------------------------------------------- bad sources

def test_bad_columnar_data_names_file_and_row(tmp_path):
    records = OPENAI * 4
    records[16] = {"messages": [{"role": "bot", "content": "x"}]}
    f = write_parquet(tmp_path / "d.parquet", records)
    with pytest.raises(DataError) as e:
        load_samples([f])
    assert e.value.one_line().startswith(f"{f}:row 17: messages[0].role must be one of system, user, assistant "
                                         "(got 'bot')")
    assert "\n" not in e.value.one_line()


@pytest.mark.parametrize("name, kind", [("d.parquet", "Parquet"), ("d.arrow", "Arrow")])
def test_a_torn_columnar_file_gets_one_clean_line(tmp_path, name, kind):
    good = (write_parquet if kind == "Parquet" else lambda p, r: write_arrow(p, r, stream=False))(tmp_path / name,
                                                                                                 OPENAI)
    data = open(good, "rb").read()
    open(good, "wb").write(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        load_samples([good])
    msg = e.value.msg
    assert msg.startswith(f"{good}: not a readable {kind} file (") and "\n" not in e.value.one_line()


def test_save_to_disk_dict_without_train_split_says_so(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(OPENAI)
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError) as e:
        load_samples([str(tmp_path / "dd")])
    assert e.value.msg == f"{tmp_path / 'dd'}: this DatasetDict has no train split (splits: validation)"
    assert f"{tmp_path / 'dd'}/validation" in e.value.hint


def test_a_folder_without_data_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError) as e:
        load_samples([str(tmp_path)])
    assert e.value.msg == f"{tmp_path}: no data files in this folder"


def test_a_hub_id_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no local folder named like the owner
    with pytest.raises(DataError) as e:
        load_samples(["tunewiz-tests/no-such-set:train"])
    line = e.value.one_line()
    assert line.startswith("tunewiz-tests/no-such-set:train: cannot download the hub dataset (")
    assert "save_to_disk" in line and "\n" not in line
    with pytest.raises(DataError) as e:  # with a config name
        load_samples(["tunewiz-tests/no-such-set/main:test"])
    assert "load_dataset('tunewiz-tests/no-such-set', 'main', split='test')" in e.value.hint
    # A missing file that only looks like an id is a missing file.
    with pytest.raises(DataError) as e:
        load_samples(["data/missing.json"])
    assert e.value.msg == "data/missing.json: no such file"


# --------------------------------------------------------------------------- streaming

def pretty_array(n: int, width: int) -> str:
    records = [{"text": f"record {i} " + "x" * (width * (i % 3)), "n": i} for i in range(n)]
    return json.dumps(records, indent=2)


def starts(text: str) -> list[int]:
    # json.dumps(indent=2) opens every element with "  {" on a line of its own.
    return [i + 1 for i, line in enumerate(text.splitlines()) if line == "  {"]


@pytest.mark.parametrize("buffer", [1, 7, 64, 1000])
def test_json_array_lines_stay_right_across_window_ends(tmp_path, monkeypatch, buffer):
    monkeypatch.setattr(json_records, "BUFFER_SIZE", buffer)
    text = pretty_array(40, 150)  # records longer than the window: they span its end
    f = tmp_path / "d.json"
    f.write_text(text)
    got = load_samples([str(f)])
    assert [s.source for s in got.samples] == [f"{f}:{line}" for line in starts(text)]
    assert [s.text for s in got.samples[-2:]] == ["record 38 " + "x" * 300, "record 39"]

    broken = text.replace('"n": 31', '"n": 31,', 1)  # a trailing comma, deep in the file
    f.write_text(broken)
    with pytest.raises(DataError) as e:
        load_samples([str(f)])
    bad_line = next(i + 1 for i, line in enumerate(broken.splitlines()) if '"n": 31,' in line) + 1
    # named by the record's first line, with the line where parsing stopped inside it
    assert e.value.msg.startswith(f"{f}:{starts(broken)[31]}: not valid JSON (")
    assert e.value.msg.endswith(f" at line {bad_line})")


@pytest.mark.parametrize("shape", ["array", "jsonl", "csv"])
def test_reading_memory_stays_flat_in_the_file_size(tmp_path, monkeypatch, shape):
    monkeypatch.setattr(json_records, "BUFFER_SIZE", 1 << 14)

    def peak_for(n: int) -> int:
        records = [{"text": f"sample {i} " + "y" * 200} for i in range(n)]
        f = tmp_path / f"d{n}.{'json' if shape == 'array' else shape}"
        if shape == "array":
            f.write_text(json.dumps(records, indent=1))
        elif shape == "jsonl":
            write_jsonl(f, records)
        else:
            write_csv(f, records)
        stream = SampleStream([str(f)])
        tracemalloc.start()
        count = sum(1 for _ in stream)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == n and os.path.getsize(f) > n * 200
        return peak

    small, large = peak_for(1_000), peak_for(10_000)  # about 0.2 MB and 2.2 MB of data
    assert large < small * 1.5 + 100_000 and large < 600_000


# --------------------------------------------------------------------------- hints and keys

def test_rows_hint_and_fingerprint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "set"
    folder.mkdir()
    write_parquet(folder / "p.parquet", OPENAI)
    write_arrow(folder / "s.arrow", OPENAI, stream=True)
    write_arrow(folder / "f.arrow", OPENAI, stream=False)
    write_csv(folder / "c.csv", OPENAI)
    write_jsonl(folder / "j.jsonl", OPENAI)
    (folder / "a.json").write_text(json.dumps(OPENAI, indent=2))
    saved = save_to_disk(tmp_path / "saved", OPENAI)
    for entry in [str(p) for p in sorted(folder.iterdir())] + [saved]:
        assert SampleStream([entry]).rows_hint() == len(OPENAI), entry
    assert SampleStream([str(folder), saved]).rows_hint() == 7 * len(OPENAI)

    key = SampleStream([str(folder)]).fingerprint()
    assert len(key) == 64 and key == SampleStream([str(folder)]).fingerprint()
    assert SampleStream(["./set"]).fingerprint() == key  # the same files, spelled otherwise
    assert SampleStream([str(folder)], "openai").fingerprint() != key
    write_jsonl(folder / "j.jsonl", OPENAI[:4])
    assert SampleStream([str(folder)]).fingerprint() != key
    with pytest.raises(DataError):
        SampleStream([str(tmp_path / "gone.jsonl")]).fingerprint()
    assert SampleStream([str(tmp_path / "gone.jsonl")]).rows_hint() is None


def test_stream_fills_counts_and_raises_like_load_samples(tmp_path):
    f = write_parquet(tmp_path / "a.parquet", ALPACA)
    stream = SampleStream([f])
    assert len(list(stream)) == 3
    assert (stream.formats, stream.records, stream.filtered) == ({f: "alpaca"}, 4, 1)
    stream.raise_if_problems()
    only_dropped = write_parquet(tmp_path / "b.parquet", ALPACA[2:3])
    stream = SampleStream([only_dropped])
    assert list(stream) == []
    with pytest.raises(DataError, match=r"no usable records \(1 read, 1 dropped\)"):
        stream.raise_if_problems()


# --------------------------------------------------------------------------- the CLI

def test_check_data_reads_a_parquet_file(tmp_path, tiny_model):
    f = write_parquet(tmp_path / "chat.parquet", OPENAI)
    r = run_cli("check-data", f, "--model", str(tiny_model), "--max-length", "64")
    assert r.returncode == 0, r.stderr
    assert f"{f}: format openai" in r.stdout and "records    5" in r.stdout
    assert f"first sample ({f}:row 1)" in r.stdout

    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 torn")
    r = run_cli("check-data", str(bad), "--model", str(tiny_model))
    assert r.returncode == 1 and f"{bad}: not a readable Parquet file" in r.stderr
    assert "Traceback" not in r.stderr
