"""convert and merge never replace what they did not write, and a full disk is a user error.

The disk-full tests write into a real, deliberately small tmpfs (root only): the commands
must say so in one line, exit 1, and leave no output folder that looks complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from support.adapter_fixtures import add_full_checkpoint, add_lora_checkpoint, make_run

from tunewiz.engine.contract.output_folder import write_file_once
from support.runs import one_line_error


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("work_dirs"), tiny_model, method="lora")
    add_lora_checkpoint(run, tiny_model, step=4, seed=3)
    return run


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_convert_never_replaces_a_merged_model(cli, tiny_model, lora_run, tmp_path):
    # merge copies the adapter's tunewiz.json (run, method) into the merged folder; that
    # must not make the merged model look like this run's convert output.
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    assert cli("convert", str(lora_run), str(adapter)).returncode == 0
    assert cli("merge", str(tiny_model), str(adapter), str(merged)).returncode == 0
    before = snapshot(merged)
    line = one_line_error(cli("convert", str(lora_run), str(merged)), str(merged), "merged model")
    assert "new output folder" in line
    assert snapshot(merged) == before
    # ...and merge never replaces the adapter it was given, nor a convert result.
    one_line_error(cli("merge", str(tiny_model), str(adapter), str(adapter)), "converted checkpoint")
    assert (adapter / "adapter_model.safetensors").is_file()


def test_convert_refuses_another_runs_adapter(cli, tiny_model, lora_run, tmp_path):
    other = make_run(tmp_path / "w", tiny_model, method="lora", name="other")
    add_lora_checkpoint(other, tiny_model, step=2, seed=5)
    out = tmp_path / "adapter"
    assert cli("convert", str(other), str(out)).returncode == 0
    before = snapshot(out)
    one_line_error(cli("convert", str(lora_run), str(out)), "another run")
    assert snapshot(out) == before


def test_write_file_once_keeps_other_content(tmp_path):
    f = tmp_path / "a.json"
    assert write_file_once(f, b"one") == "written"
    assert write_file_once(f, b"one") == "same"
    f.write_bytes(b"edited by hand")
    assert write_file_once(f, b"one") == "kept"
    assert f.read_bytes() == b"edited by hand"
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "elsewhere")
    assert write_file_once(link, b"x") == "kept"
    assert not (tmp_path / "elsewhere").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- disk full

@pytest.fixture
def small_disk(tmp_path):
    """A mounted tmpfs of a given size; skipped where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounts = []

    def make(size: str) -> Path:
        point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        point.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounts.append(point)
        return point

    yield make
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def assert_nothing_complete(disk: Path, out: Path) -> None:
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    leftovers = [p.name for p in disk.iterdir()]
    assert leftovers == [], leftovers  # temp folder removed, space given back


def test_convert_on_a_full_disk_is_one_line(cli, lora_run, small_disk):
    size = (lora_run / "checkpoints/step-4/adapter_model.safetensors").stat().st_size
    disk = small_disk(f"{size // 2}")
    out = disk / "adapter"
    one_line_error(cli("convert", str(lora_run), str(out)), "no space left", str(out), "free space")
    assert_nothing_complete(disk, out)


def test_merge_on_a_full_disk_is_one_line(cli, tiny_model, lora_run, tmp_path, small_disk):
    adapter = tmp_path / "adapter"
    assert cli("convert", str(lora_run), str(adapter)).returncode == 0
    weights = sum(p.stat().st_size for p in tiny_model.glob("*.safetensors"))
    disk = small_disk(f"{weights // 2}")
    out = disk / "merged"
    one_line_error(cli("merge", str(tiny_model), str(adapter), str(out)), "no space left", str(out))
    assert_nothing_complete(disk, out)


def test_full_disk_while_replacing_keeps_the_old_result(cli, tiny_model, tmp_path, small_disk):
    # A re-convert into an earlier result of the same run: the old one must survive.
    run = make_run(tmp_path / "w", tiny_model, method="full")
    add_full_checkpoint(run, tiny_model, step=2)
    weights = (run / "checkpoints/step-2/model.safetensors").stat().st_size
    disk = small_disk(f"{int(weights * 1.5)}")
    out = disk / "hf"
    first = cli("convert", str(run), str(out))
    if first.returncode != 0:  # the first copy needs the room of the model and its tokenizer
        pytest.skip(f"the small disk did not hold one copy: {first.stderr.strip()}")
    before = snapshot(out)
    one_line_error(cli("convert", str(run), str(out)), "no space left")
    assert snapshot(out) == before
    assert [p.name for p in disk.iterdir()] == ["hf"]


# --------------------------------------------------------------------------- single files

def test_demo_keeps_the_users_sample_files(tmp_path, monkeypatch, capsys):
    from argparse import Namespace

    from tunewiz.commands import demo as demo_command
    from tunewiz.engine import demo

    data = tmp_path / "data"
    first = demo.write_sample_datasets(data, "Ada")
    own = json.dumps([{"conversation": [{"input": "hi", "output": "my own data"}]}])
    first["conversation"].write_text(own, encoding="utf-8")   # edited by hand
    (data / "pretrain.jsonl").write_text('{"text": "mine"}\n', encoding="utf-8")

    monkeypatch.setattr(demo, "demo_model_path", lambda progress=None: tmp_path / "model")
    monkeypatch.setattr(demo, "demo_model_ready", lambda: True)
    assert demo_command.run(Namespace(quiet=True, dest=str(data), name="tunewiz")) == 0
    said = capsys.readouterr().out
    assert (data / "assistant.json").read_text(encoding="utf-8") == own
    assert (data / "pretrain.jsonl").read_text(encoding="utf-8") == '{"text": "mine"}\n'
    assert f"{data / 'assistant.json'} holds other data" in said and "assistant-tunewiz.json" in said
    assert "tunewiz的小助手" in (data / "assistant-tunewiz.json").read_text(encoding="utf-8")
    # The openai file was still demo's own (Ada's set differs from tunewiz's): kept as well.
    assert "Ada" in (data / "assistant_openai.jsonl").read_text(encoding="utf-8")

    # Again: the samples beside are demo's own now, so nothing new appears.
    before = sorted(p.name for p in data.iterdir())
    again = demo.write_sample_datasets(data, "tunewiz")
    assert again["conversation"] == data / "assistant-tunewiz.json"
    assert sorted(p.name for p in data.iterdir()) == before
    # And an unchanged sample is simply used in place.
    assert demo.write_sample_datasets(data, "Ada")["openai"] == data / "assistant_openai.jsonl"


def test_presets_copy_never_writes_through_a_link_or_tracebacks(cli, tmp_path):
    target = tmp_path / "elsewhere.yaml"
    link = tmp_path / "my.yaml"
    link.symlink_to(target)  # dangling: exists() is False, yet a plain copy would write the target
    one_line_error(cli("presets", "copy", "sft-lora", str(link)), "already exists")
    assert not target.exists()
    one_line_error(cli("presets", "copy", "sft-lora", str(tmp_path / "no" / "such" / "x.yaml")), "cannot write")
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\n")
    one_line_error(cli("presets", "copy", "sft-lora", str(mine)), "holds something else")
    assert mine.read_text() == "name: mine\n"


def test_results_written_before_written_by_keep_their_owner(tmp_path):
    from tunewiz.engine.contract.output_folder import check_replaceable

    identity = {"run": "/runs/a", "method": "lora"}
    old_adapter = tmp_path / "adapter"
    old_adapter.mkdir()
    (old_adapter / "tunewiz.json").write_text(json.dumps(identity))
    check_replaceable(old_adapter, "convert", identity)  # its own earlier result: may be replaced
    old_merged = tmp_path / "merged"
    old_merged.mkdir()
    (old_merged / "tunewiz.json").write_text(json.dumps({**identity, "merged_base": "/b", "merged_adapter": "/a"}))
    with pytest.raises(Exception, match="merged model"):
        check_replaceable(old_merged, "convert", identity)
    check_replaceable(old_merged, "merge", {"merged_base": "/b", "merged_adapter": "/a"})
