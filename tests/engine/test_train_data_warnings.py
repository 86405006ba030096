"""Training on data worth a warning: the warnings are `log` events of level warning, from a
fresh build and from the tokenized cache alike; skipped records change the cache key."""

from __future__ import annotations

import json

from tunewiz.engine.contract.config import DataConfig
from tunewiz.engine.contract.events import read_events
from tunewiz.engine.token_cache import prepare
from support.runs import only_run, write_config

GOOD = {"instruction": "Who are you?", "input": "", "output": "I am {{name}}, made by {{author}}."}


def identity_set(path, broken_lines=(4, 9)):
    lines = [json.dumps(GOOD)] * 12
    for n in broken_lines:
        lines[n - 1] = '{"instruction": "cut off'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_training_warns_of_skipped_records_and_placeholders(tiny_model, tmp_path, cli):
    data = identity_set(tmp_path / "identity.jsonl")
    cfg = write_config(tmp_path, tiny_model, data, data__skip_invalid=True, train__max_steps=2,
                       eval={"inputs": [], "every": 0})
    r = cli("train", str(cfg))
    assert r.returncode == 0, r.stderr
    warnings = [e["msg"] for e in read_events(only_run(tmp_path) / "events.jsonl")
                if e["type"] == "log" and e["level"] == "warning"]
    assert warnings == [
        f"{data}: 10 records have unfilled placeholders {{{{name}}}}, {{{{author}}}}; replace them in the file, "
        f"e.g. sed -i 's/{{{{name}}}}/NAME/g; s/{{{{author}}}}/AUTHOR/g' {data}",
        f"skipped 2 bad records: {data}:4: not valid JSON (Unterminated string starting at); "
        f"{data}:9: not valid JSON (Unterminated string starting at)",
    ]


def test_warnings_come_from_the_cache_too_and_skipping_has_its_own_key(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    data = identity_set(tmp_path / "identity.jsonl")
    cfg = DataConfig(files=[str(data)], max_length=64, skip_invalid=True, cache_dir=str(tmp_path / "cache"))
    said: list[str] = []
    first = prepare(cfg, "sft", tok, log=said.append)
    again = prepare(cfg, "sft", tok, log=said.append)
    assert not first.hit and again.hit and first.path == again.path
    assert [m for m in said if m.startswith("warning: skipped 2 bad records")] == [
        f"warning: skipped 2 bad records: {data}:4: not valid JSON (Unterminated string starting at); "
        f"{data}:9: not valid JSON (Unterminated string starting at)"] * 2
    # The same clean file with and without skipping: two stores (a skip could have changed it).
    clean = identity_set(tmp_path / "clean.jsonl", broken_lines=())
    paths = {prepare(DataConfig(files=[str(clean)], max_length=64, skip_invalid=skip,
                                cache_dir=str(tmp_path / "cache")), "sft", tok).path for skip in (False, True)}
    assert len(paths) == 2
