"""bench_peers.py's side names: what `tunewiz+KEY=VALUE` writes into the config a side trains
with, train keys and other sections' (dotted) keys alike, checked by the real config schema."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import bench_peers  # noqa: E402
from tunewiz.engine.contract.config import config_from_dict  # noqa: E402
from tunewiz.engine.contract.errors import ConfigError  # noqa: E402

ARGS = argparse.Namespace(warmup_steps=2, steps=5, max_length=2048)


def _config(side: str, workload: str = "qlora7b-b1-ckpt"):
    return config_from_dict(bench_peers.tunewiz_config(side, workload, ARGS, Path("m"), Path("d.jsonl"), Path("runs")))


def test_a_plain_side_trains_the_workload_with_the_config_defaults():
    cfg = _config("tunewiz")
    assert (cfg.method, cfg.train.batch_size, cfg.train.gradient_checkpointing) == ("qlora", 1, True)
    assert cfg.train.max_steps == 7 and cfg.quant.double_quant is True


def test_train_keys_and_dotted_section_keys_both_reach_the_config():
    cfg = _config("tunewiz+compile=false+batch_size=2+quant.double_quant=false")
    assert cfg.train.compile is False and cfg.train.batch_size == 2
    assert cfg.quant.double_quant is False
    assert bench_peers.tunewiz_sections("tunewiz+host_embedding=false+quant.double_quant=false") == \
        ({"host_embedding": False}, {"quant": {"double_quant": False}})


def test_a_misspelt_key_fails_in_the_config_not_silently():
    with pytest.raises(ConfigError):
        _config("tunewiz+quant.doubel_quant=false")
