"""train.auto_batch: the micro-batch and checkpointing chosen from a GPU's free memory.

The GPU test (tests/gpu/test_gpu.py::test_auto_batch_regroups_the_step_and_learns_the_same)
trains both ways and compares the losses; these check the choice itself on real model sizes.
"""

from __future__ import annotations

import pytest

from tunewiz.engine.contract import auto_batch
from tunewiz.engine.contract.config import config_from_dict
from tunewiz.engine.contract.memory_estimate import estimate
from tunewiz.engine.contract.model_facts import read_model_facts
from support.model_shapes import model_folder


def preset_config(method="lora", batch=1, accum=16, ckpt=True, seq=2048, **over):
    """What the presets write: 1 x 16 with checkpointing."""
    train = {"batch_size": batch, "grad_accum": accum, "gradient_checkpointing": ckpt, **over.pop("train", {})}
    return config_from_dict({"model": {"path": "m"}, "method": method, "stage": "sft",
                             "data": {"files": ["d.jsonl"], "max_length": seq}, "train": train, **over})


@pytest.fixture
def facts(tmp_path):
    return lambda shape: read_model_facts(model_folder(tmp_path, shape))


def test_a_large_gpu_trains_saturating_micro_batches_without_checkpointing(facts):
    cfg, f = preset_config(), facts("1.8b")
    choice = auto_batch.choose(cfg, f, devices=1, free_gib=139)
    # 4 x 2,048 tokens saturate the GPU; 8 would only take memory.
    assert (choice.batch_size, choice.grad_accum, choice.gradient_checkpointing) == (4, 4, False)
    applied = auto_batch.apply(cfg, choice)
    assert applied.train.batch_size * applied.train.grad_accum == 16
    assert estimate(applied, f, 1).needed_gib <= 139 * auto_batch.HEADROOM
    assert "4 x 4" in choice.describe(cfg) and "config: 1 x 16, checkpointing" in choice.describe(cfg)


def test_full_fine_tuning_takes_the_biggest_micro_batch_that_fits_without_checkpointing(facts):
    # Its matrix products keep gaining past 4 x 2,048 tokens (16 x 2,048 ran 1.09x 4 x 2,048
    # on an H200), where LoRA's step does not.
    cfg, f = preset_config("full"), facts("1.8b")
    big = auto_batch.choose(cfg, f, devices=1, free_gib=139)
    assert (big.batch_size, big.grad_accum, big.gradient_checkpointing) == (16, 1, False)
    # Where 16 rows fit only with checkpointing, fewer rows without it are faster (8 rows
    # ran 56.4k tok/s, 16 checkpointed 47.7k).
    assert estimate(auto_batch.apply(cfg, big), f, 1).needed_gib > 60 * auto_batch.HEADROOM
    mid = auto_batch.choose(cfg, f, devices=1, free_gib=60)
    assert mid.gradient_checkpointing is False and mid.batch_size < 16
    assert auto_batch.relative_pace(cfg, 8, False) > auto_batch.relative_pace(cfg, 16, True)
    assert auto_batch.relative_pace(preset_config("lora"), 16, False) == auto_batch.relative_pace(preset_config("lora"), 4, False)


@pytest.mark.parametrize("shape,method,free", [("1.8b", "lora", 24), ("1.8b", "full", 40), ("7b", "qlora", 16),
                                               ("7b", "lora", 40), ("demo", "full", 8)])
def test_every_choice_fits_and_keeps_the_sequences_per_step(facts, shape, method, free):
    cfg, f = preset_config(method), facts(shape)
    choice = auto_batch.choose(cfg, f, devices=1, free_gib=free)
    assert choice is not None, (shape, method, free)
    assert choice.batch_size * choice.grad_accum == 16
    assert choice.needed_gib <= free * auto_batch.HEADROOM
    assert estimate(auto_batch.apply(cfg, choice), f, 1).needed_gib == pytest.approx(choice.needed_gib)
    # Nothing faster fits: one more row (or checkpointing off) goes past the budget or gains nothing.
    if choice.gradient_checkpointing:
        off = auto_batch.apply(cfg, auto_batch.BatchChoice(choice.batch_size, choice.grad_accum, False, 0, free))
        assert estimate(off, f, 1).needed_gib > free * auto_batch.HEADROOM


def test_a_small_gpu_keeps_checkpointing_on(facts):
    choice = auto_batch.choose(preset_config("qlora"), facts("7b"), devices=1, free_gib=12)
    assert choice is not None and choice.gradient_checkpointing


def test_odd_step_sizes_split_into_their_divisors(facts):
    choice = auto_batch.choose(preset_config(batch=3, accum=5), facts("1.8b"), devices=1, free_gib=139)
    assert choice.batch_size * choice.grad_accum == 15 and choice.batch_size in (1, 3, 5, 15)


def test_nothing_fits_leaves_the_config_as_written(facts):
    cfg = preset_config("full")
    assert auto_batch.choose(cfg, facts("70b"), devices=1, free_gib=80) is None
    assert auto_batch.apply(cfg, None) is cfg


@pytest.mark.parametrize("over,devices,why", [
    ({"train": {"auto_batch": False}}, 1, "auto_batch is false"),
    ({}, 0, "CPU"),
    ({"layout": {"deepspeed": "zero2"}}, 2, "DeepSpeed"),
])
def test_where_the_config_is_kept_as_written(facts, over, devices, why):
    cfg = preset_config(**over)
    assert why in auto_batch.applies(cfg, devices)
    assert auto_batch.choose(cfg, facts("1.8b"), devices=devices, free_gib=139) is None


def test_auto_batch_is_a_checked_bool():
    from tunewiz.engine.contract.errors import ConfigError

    with pytest.raises(ConfigError, match="auto_batch"):
        preset_config(train={"auto_batch": "sometimes"})


def test_the_gpu_it_decides_from_is_the_first_process_s():
    from tunewiz.engine.contract.gpus import Gpu

    gpus = [Gpu(1, "A", 40 * 1024, 1024), Gpu(3, "B", 80 * 1024, 2048)]
    assert auto_batch.first_gpu_memory(gpus) == (40.0, 1.0)            # all of them: the first
    assert auto_batch.first_gpu_memory(gpus, [3, 1]) == (80.0, 2.0)    # layout.gpus [3, 1]: rank 0 is on 3
    assert auto_batch.first_gpu_memory(gpus, []) == (None, 0.0)        # no GPU for this run
    assert auto_batch.first_gpu_memory(gpus, [7]) == (None, 0.0)       # not on this machine
