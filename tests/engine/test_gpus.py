"""GPU detection, shared by the wizard and the planner: a fake nvidia-smi on PATH (a real
subprocess) describes a four-GPU machine with MIG instances on GPU 2, and
CUDA_VISIBLE_DEVICES narrows it the way CUDA does."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tunewiz.engine.contract.config import config_from_dict
from tunewiz.engine.contract.errors import ConfigError
from tunewiz.engine.contract.gpus import visible_gpus
from tunewiz.engine.contract.layout_plan import make_plan
from tunewiz.tui.services.gpus import detect_gpus

UUIDS = ["GPU-0a1b2c3d-0000-1111-2222-333344445555", "GPU-1f2e3d4c-aaaa-bbbb-cccc-ddddeeeeffff",
         "GPU-2c2c2c2c-1234-5678-9abc-def012345678", "GPU-3d3d3d3d-8765-4321-cba9-876543210fed"]
MIG_A, MIG_B = "MIG-7e1f0c2a-5b6d-5e4f-8a9b-0c1d2e3f4a5b", "MIG-7e99aa00-1111-5222-8333-444455556666"
QUERY = "".join(f"{i}, {u}, NVIDIA H200, 143771, {4 if i != 1 else 30000}\n" for i, u in enumerate(UUIDS))
LISTING = "".join(f"GPU {i}: NVIDIA H200 (UUID: {u})\n" for i, u in enumerate(UUIDS[:3]))
LISTING += (f"  MIG 1g.18gb     Device  0: (UUID: {MIG_A})\n"
            f"  MIG 3g.71gb     Device  1: (UUID: {MIG_B})\n")
LISTING += f"GPU 3: NVIDIA H200 (UUID: {UUIDS[3]})\n"


@pytest.fixture
def fake_smi(tmp_path, monkeypatch) -> Path:
    """nvidia-smi answering --query-gpu and -L like a driver would (it ignores CUDA_VISIBLE_DEVICES)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "query.txt").write_text(QUERY)
    (folder / "list.txt").write_text(LISTING)
    script = folder / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
case "$1" in
  --query-gpu=index,uuid,name,memory.total,memory.used) cat {shlex.quote(str(folder / 'query.txt'))} ;;
  -L) cat {shlex.quote(str(folder / 'list.txt'))} ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
esac
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return folder


def ids(gpus) -> list[int]:
    return [g.index for g in gpus]


def test_unset_means_every_gpu(fake_smi, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = visible_gpus()
    assert ids(gpus) == [0, 1, 2, 3]
    assert [g.uuid for g in gpus] == UUIDS
    assert gpus[1].in_use and not gpus[0].in_use
    assert round(gpus[0].memory_total_gib) == 140


def test_empty_means_no_gpu(fake_smi, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


@pytest.mark.parametrize("value, expected", [
    ("2,0", [2, 0]),                     # CUDA's order is the variable's order
    (" 3 , 1 ", [3, 1]),
    ("1,7,2", [1]),                      # the list ends at a device that does not exist
    ("0,0,1", []),                       # a device named twice: CUDA then sees none
    ("1,GPU-1f2e", []),                  # ... however it is named
    ("-1", []),
    ("-1,0", []),
])
def test_indices(fake_smi, monkeypatch, value, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert ids(visible_gpus()) == expected


@pytest.mark.parametrize("value, expected", [
    (f"{UUIDS[3]},{UUIDS[1]}", [3, 1]),
    ("GPU-2c2c,GPU-0a", [2, 0]),         # any prefix that names one GPU
    ("GPU-1f2e,GPU-", [1]),              # GPU- alone names all four: the list ends there
    ("GPU-ffff", []),
    ("1,GPU-3d3d", [1, 3]),              # indices and uuids mixed
])
def test_gpu_uuids(fake_smi, monkeypatch, value, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert ids(visible_gpus()) == expected


def test_mig_instances(fake_smi, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-7e99")
    (mig,) = visible_gpus()
    assert (mig.index, mig.uuid, mig.memory_total_mib) == (2, MIG_B, 71 * 1024)
    assert "MIG 3g.71gb" in mig.name
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-7e")   # both instances start so: names none
    assert visible_gpus() == []


def test_no_driver_means_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == []


def test_the_wizard_offers_what_the_planner_uses(fake_smi, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{UUIDS[3]},1")
    assert ids(detect_gpus()) == [3, 1]
    plan = make_plan(config_from_dict({"name": "job"}))
    assert (plan.nproc, plan.devices) == (2, [3, 1])
    # the processes get the devices by uuid, whatever CUDA's device order
    assert plan.cuda_visible == f"{UUIDS[3]},{UUIDS[1]}"


def test_the_planner_refuses_a_gpu_hidden_by_cuda_visible_devices(fake_smi, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-2c2c")
    with pytest.raises(ConfigError, match=r"GPU 0 is not visible \(visible: \[2\]\)"):
        make_plan(config_from_dict({"name": "job", "layout": {"gpus": [0]}}))
    plan = make_plan(config_from_dict({"name": "job", "layout": {"gpus": [2]}}))
    assert plan.cuda_visible == UUIDS[2]


def test_print_node_commands_counts_the_visible_gpus(fake_smi, tmp_path, cli):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: job\nlayout:\n  nnodes: 2\n")
    r = cli("train", str(cfg), "--print-node-commands",
            env={"PATH": f"{fake_smi}:/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "GPU-3d,GPU-0a,5"})
    assert r.returncode == 0, r.stderr
    assert "# 2 node(s) x 2 process(es)" in r.stdout
