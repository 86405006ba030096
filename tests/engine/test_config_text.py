"""Commented YAML of a config loads back to the same config, whatever its values hold."""

from __future__ import annotations

import pytest
import yaml

from tunewiz.engine.contract.config import config_from_dict, load_config
from tunewiz.engine.contract.config_text import commented_yaml
from tunewiz.engine.contract.preset_catalog import list_presets


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: p.stem)
def test_every_preset_written_with_comments_loads_back_the_same(preset):
    cfg = load_config(preset)
    # Values that could pass for YAML syntax or comments.
    cfg.data.system = 'Be brief: "yes" # not a comment'
    cfg.eval.inputs = ["请介绍一下你自己", "a: b", "# hash", "'quoted'"]
    text = commented_yaml(cfg, preset, "tunewiz train x.yaml --detach")
    assert config_from_dict(yaml.safe_load(text)) == cfg
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(" # " in line for line in body)
