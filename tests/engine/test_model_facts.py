"""One reader of a model folder's config.json for the wizard and the engine: the Model step
shows what the engine will judge the run by."""

from __future__ import annotations

import json

import pytest

from tunewiz.engine.contract.errors import ModelError
from tunewiz.engine.models import check_model, inspect_model
from tunewiz.tui.services.model_folders import read_model_facts


def test_wizard_and_engine_read_the_same_facts(tiny_model):
    engine, wizard = inspect_model(tiny_model), read_model_facts(str(tiny_model))
    assert engine == wizard
    assert wizard.is_causal_lm and wizard.params and wizard.layers > 0
    assert "parameters" in wizard.describe() and wizard.problem == ""


def test_an_unreadable_config_is_the_same_problem_on_both_sides(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError) as raised:
        inspect_model(tmp_path)
    facts = read_model_facts(str(tmp_path))
    assert facts.problem == raised.value.msg and "config.json: cannot read" in facts.problem
    assert facts.describe() == facts.problem


def test_a_folder_without_config_json(tmp_path):
    assert "no config.json here" in read_model_facts(str(tmp_path)).problem


def test_remote_code(tmp_path):
    # auto_map for the model class itself: code from the folder is needed, both sides say so.
    cfg = {"architectures": ["MyForCausalLM"], "model_type": "my_own",
           "auto_map": {"AutoModelForCausalLM": "modeling_my.MyForCausalLM"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert read_model_facts(str(tmp_path)).needs_remote_code and inspect_model(tmp_path).needs_remote_code
    with pytest.raises(ModelError, match="needs trust_remote_code"):
        check_model(tmp_path, trust_remote_code=False)
    # auto_map only for a tokenizer of a type transformers knows: the engine needs no code;
    # the wizard, which cannot ask transformers, warns.
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "auto_map": {"AutoTokenizer": "tok.T"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert not inspect_model(tmp_path).needs_remote_code
    assert read_model_facts(str(tmp_path)).needs_remote_code
    assert check_model(tmp_path, trust_remote_code=False).is_causal_lm
