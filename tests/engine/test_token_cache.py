"""The tokenized cache: hit, miss and what invalidates it, torn stores never used, one
builder per node, and prepare-data then train without tokenizing again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from tunewiz.engine.contract.config import DataConfig
from tunewiz.engine.encode import Encoder
from tunewiz.engine.contract.errors import DataError
from tunewiz.engine.contract.events import read_events
from tunewiz.engine.contract.formats import load_samples
from tunewiz.engine.packing import pack, unpacked
from tunewiz.engine.token_cache import prepare
from support.runs import only_run, write_config


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def write_set(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        turns = [{"input": f"Please introduce yourself {i} " * int(rng.integers(1, 4)),
                  "output": f"I am the assistant of tunewiz {i}. " * int(rng.integers(1, 9))}
                 for _ in range(int(rng.integers(1, 3)))]
        rows.append(json.dumps({"conversation": turns}))
    path.write_text("\n".join(rows) + "\n")
    return path


def run_prepare(cfg: DataConfig, tok, **kw):
    said: list[str] = []
    prepared = prepare(cfg, "sft", tok, log=said.append, **kw)
    return prepared, " | ".join(said)


@pytest.mark.parametrize("pack_", [True, False])
def test_store_holds_what_in_memory_encoding_and_packing_give(tmp_path, tok, pack_):
    """Sequence for sequence, token for token: the store (built on 2 processes) equals the
    plain encode-then-pack of the same samples, labels and positions included."""
    f = write_set(tmp_path / "d.jsonl", 1500)
    cfg = DataConfig(files=[str(f)], max_length=96, pack=pack_, cache_dir=str(tmp_path / "cache"))
    prepared, _ = run_prepare(cfg, tok, num_proc=2)
    encoded = Encoder(tok, max_length=96).encode_many(load_samples([str(f)]).samples)
    useful = [e for e in encoded if e.trained_tokens]
    expected = pack(useful, 96) if pack_ else unpacked(useful)
    store = prepared.store
    assert len(store) == len(expected) == prepared.stats["sequences"]
    for i, want in enumerate(expected):
        got = store[i]
        assert got["input_ids"].tolist() == want["input_ids"]
        assert got["labels"].tolist() == want["labels"]
        assert got["position_ids"].tolist() == list(want["position_ids"])
        assert store.seq_trained[i] == sum(1 for x in want["labels"][1:] if x != -100)
    # compact: 4 bytes of ids and 1 of mask per token on disk, nothing per token in RAM
    assert (store.path / "input_ids.bin").stat().st_size == 4 * prepared.stats["tokens"]
    assert (store.path / "trained.bin").stat().st_size == prepared.stats["tokens"]
    assert isinstance(store.input_ids, np.memmap)


def test_one_process_and_several_build_the_same_store(tmp_path, tok):
    f = write_set(tmp_path / "d.jsonl", 1200)
    a, _ = run_prepare(DataConfig(files=[str(f)], max_length=64, cache_dir=str(tmp_path / "a")), tok, num_proc=1)
    b, _ = run_prepare(DataConfig(files=[str(f)], max_length=64, cache_dir=str(tmp_path / "b")), tok, num_proc=2)
    for name in ("input_ids.bin", "trained.bin", "seq_samples.npy", "seq_offsets.npy", "seq_trained.npy"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name


def test_hit_miss_and_what_invalidates(tmp_path, tok):
    f = write_set(tmp_path / "d.jsonl", 300)
    cfg = DataConfig(files=[str(f)], max_length=64, cache_dir=str(tmp_path / "cache"))
    first, said = run_prepare(cfg, tok)
    assert not first.hit and "first time for these files" in said
    again, said = run_prepare(cfg, tok)
    assert again.hit and again.path == first.path and "using the tokenized cache" in said

    write_set(f, 300, seed=1)                      # the data edited
    edited, said = run_prepare(cfg, tok)
    assert not edited.hit and edited.path != first.path and "the data files changed" in said

    other = DataConfig(files=[str(f)], max_length=64, cache_dir=str(tmp_path / "cache"), template="qwen_chat")
    templated, said = run_prepare(other, tok)
    assert not templated.hit and "data.template changed" in said
    assert templated.store[0]["input_ids"].tolist() != edited.store[0]["input_ids"].tolist()

    longer = DataConfig(files=[str(f)], max_length=128, cache_dir=str(tmp_path / "cache"))
    assert "data.max_length changed" in run_prepare(longer, tok)[1]
    assert run_prepare(cfg, tok)[0].hit            # the edited data's store is still there


KILLER = textwrap.dedent("""
    import os, signal, sys
    from transformers import AutoTokenizer
    from tunewiz.engine import token_store
    from tunewiz.engine.contract.config import DataConfig
    from tunewiz.engine.token_cache import prepare

    real_rename = os.rename
    def die_before_publishing(src, dst):
        if ".tmp-" in str(src):
            os.kill(os.getpid(), signal.SIGKILL)   # every file written, the store not yet published
        real_rename(src, dst)
    token_store.os.rename = die_before_publishing
    tok = AutoTokenizer.from_pretrained(sys.argv[1])
    prepare(DataConfig(files=[sys.argv[2]], max_length=64, cache_dir=sys.argv[3]), "sft", tok)
""")


def test_a_kill_while_writing_leaves_no_store_that_is_used(tmp_path, tok, tiny_model):
    f = write_set(tmp_path / "d.jsonl", 400)
    cache = tmp_path / "cache"
    r = subprocess.run([sys.executable, "-c", KILLER, str(tiny_model), str(f), str(cache)],
                       capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == -9, r.stderr
    torn = [p for p in cache.iterdir() if ".tmp-" in p.name]
    assert len(torn) == 1 and (torn[0] / "meta.json").is_file()   # whole on disk, but never published
    cfg = DataConfig(files=[str(f)], max_length=64, cache_dir=str(cache))
    prepared, said = run_prepare(cfg, tok)
    assert not prepared.hit and "tokenizing" in said
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]   # the torn folder is cleaned
    assert len(prepared.store) == prepared.stats["sequences"] > 0


def test_a_store_torn_after_publishing_is_rebuilt(tmp_path, tok):
    """A file cut short (disk trouble, a hand edit) makes the store invalid, never half-read."""
    f = write_set(tmp_path / "d.jsonl", 200)
    cfg = DataConfig(files=[str(f)], max_length=64, cache_dir=str(tmp_path / "cache"))
    first, _ = run_prepare(cfg, tok)
    ids = first.path / "input_ids.bin"
    ids.write_bytes(ids.read_bytes()[:-4])
    from tunewiz.engine.token_store import TornStore, TokenStore, open_store

    with pytest.raises(TornStore):
        TokenStore(first.path)
    assert open_store(first.path) is None
    rebuilt, said = run_prepare(cfg, tok)     # the torn store sits where the key points
    assert not rebuilt.hit and "tokeniz" in said
    assert len(rebuilt.store) == len(first.store)


def test_waiting_rank_maps_the_builders_store(tmp_path, tok):
    """A rank that does not build waits for the lock holder, then maps the same store."""
    f = write_set(tmp_path / "d.jsonl", 600)
    cfg = DataConfig(files=[str(f)], max_length=64, cache_dir=str(tmp_path / "cache"))
    got: dict = {}
    building = threading.Event()

    def waiter():
        building.wait()
        got["prepared"], got["said"] = run_prepare(cfg, tok, builder=False)

    t = threading.Thread(target=waiter)
    t.start()

    def progress(done, total):
        building.set()                              # the builder holds the lock by now

    built, _ = run_prepare(cfg, tok, progress=progress)
    t.join()
    assert got["prepared"].path == built.path
    assert "tokenizing" not in got["said"].replace("to tokenize", "")
    assert "using the tokenized cache" in got["said"]


def test_waiting_rank_raises_the_builders_error(tmp_path, tok):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation": [{"input": "q", "output": "a"}]}\n{"conversation": 3}\n')
    cfg = DataConfig(files=[str(bad)], max_length=64, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError) as built:
        run_prepare(cfg, tok)
    with pytest.raises(DataError) as waited:
        run_prepare(cfg, tok, builder=False)
    assert waited.value.msg == built.value.msg and "bad.jsonl:2" in waited.value.msg


def test_prepare_data_then_train_skips_tokenizing(tiny_model, tmp_path, cli):
    data = write_set(tmp_path / "d.jsonl", 64)
    cfg = write_config(tmp_path, tiny_model, data, train__max_steps=2, train__save_every=2,
                       eval={"inputs": [], "every": 0})
    env = {"TUNEWIZ_DATA_CACHE": str(tmp_path / "cache")}
    r = cli("prepare-data", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    assert "training will see:" in r.stdout and "sequences" in r.stdout and "starts from this cache" in r.stdout
    r = cli("prepare-data", str(cfg), "--json", env=env)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["cache_hit"] and summary["samples"] == 64
    r = cli("train", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    evs = read_events(only_run(tmp_path) / "events.jsonl")
    assert not [e for e in evs if e["type"] == "progress" and e["phase"] == "tokenize"]
    logs = [e["msg"] for e in evs if e["type"] == "log"]
    assert any(m.startswith("using the tokenized cache") for m in logs), logs
    assert next(e for e in evs if e["type"] == "start")["data"]["sequences"] == summary["sequences"]


def test_prepare_data_bad_record_is_one_line(tiny_model, tmp_path, cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation": [{"input": "q", "output": "a"}]}\n{"conversation": [{"input": "q"}]}\n')
    cfg = write_config(tmp_path, tiny_model, bad)
    r = cli("prepare-data", str(cfg), env={"TUNEWIZ_DATA_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "bad.jsonl:2" in r.stderr and "Traceback" not in r.stderr
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]   # nothing that looks like a store


def test_the_same_files_spelled_differently_share_a_cache(tmp_path, tok, monkeypatch):
    """A run's config holds absolute paths, the user's may hold relative ones: one cache."""
    f = write_set(tmp_path / "d.jsonl", 100)
    cache = str(tmp_path / "cache")
    first, _ = run_prepare(DataConfig(files=[str(f)], max_length=64, cache_dir=cache), tok)
    monkeypatch.chdir(tmp_path)
    again, said = run_prepare(DataConfig(files=["./d.jsonl"], max_length=64, cache_dir=cache), tok)
    assert again.hit and again.path == first.path, said
