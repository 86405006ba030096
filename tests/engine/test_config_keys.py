"""Dotted config keys ("train.lr"), read and set the one way the wizard's fields, its start-up
overrides and the XTuner import all use."""

from __future__ import annotations

import pytest

from tunewiz.engine.contract.config import Config, config_from_dict, get_key, set_key, to_dict
from tunewiz.engine.contract.errors import ConfigError


def test_a_config_and_its_dict_form():
    cfg = Config()
    set_key(cfg, "train.lr", 3e-4)
    set_key(cfg, "name", "mine")
    assert (get_key(cfg, "train.lr"), cfg.train.lr, cfg.name) == (3e-4, 3e-4, "mine")
    data = to_dict(Config())
    set_key(data, "lora.r", 32)
    assert get_key(data, "lora.r") == 32 and config_from_dict(data).lora.r == 32


@pytest.mark.parametrize("key, said", [
    ("train.lrr", "train.lrr: no such config key (did you mean train.lr?)"),
    ("trian.lr", "trian: no such config section (did you mean train.lr?)"),
    ("name.first", "name.first: no such config key"),
])
def test_an_unknown_key_is_named_with_a_fix(key, said):
    with pytest.raises(ConfigError) as raised:
        set_key(Config(), key, 1)
    assert raised.value.one_line().startswith(said)
    with pytest.raises(ConfigError):
        get_key(Config(), key)


def test_a_dict_takes_a_new_leaf_for_the_loader_to_judge():
    data = to_dict(Config())
    set_key(data, "train.lrr", 1.0)
    with pytest.raises(ConfigError, match="lrr"):
        config_from_dict(data)
