"""The template registry: XTuner's strings, lookup errors, and no torch on import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunewiz.engine.contract.errors import ConfigError
from tunewiz.engine.contract.templates import TEMPLATES, get_template, template_names


def test_required_templates_exist():
    for name in ("internlm2_chat", "qwen_chat", "llama3_chat", "default"):
        assert name in TEMPLATES
    assert template_names()[0] == "auto"


def test_internlm2_chat_matches_xtuner():
    t = get_template("internlm2_chat")
    assert t.system == "<|im_start|>system\n{system}<|im_end|>\n"
    assert t.instruction == "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
    assert (t.suffix, t.suffix_as_eos, t.sep, t.stop_words) == ("<|im_end|>", True, "\n", ("<|im_end|>",))


def test_qwen_llama3_default_match_xtuner():
    q = get_template("qwen_chat")
    assert q.instruction == "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
    assert q.stop_words == ("<|im_end|>", "<|endoftext|>") and q.suffix_as_eos
    l3 = get_template("llama3_chat")
    assert l3.system == "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
    assert l3.instruction == ("<|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert (l3.suffix, l3.suffix_as_eos, l3.sep) == ("<|eot_id|>", True, "")
    d = get_template("default")
    assert (d.system, d.instruction, d.suffix, d.suffix_as_eos, d.sep) == (
        "<|System|>:{system}\n", "<|User|>:{input}\n<|Bot|>:", "", False, "\n")
    assert d.needs_eos and not q.needs_eos


def test_rendering_helpers():
    t = get_template("internlm2_chat")
    assert t.render_system("") == ""      # no empty system block
    assert t.render_system("Be brief.") == "<|im_start|>system\nBe brief.<|im_end|>\n"
    assert get_template("default").render_instruction("hi", 2) == "<|User|>:hi\n<|Bot|>:"


def test_unknown_template_lists_known_names():
    with pytest.raises(ConfigError) as e:
        get_template("internlm3")
    assert "internlm3" in e.value.msg
    for name in ("internlm2_chat", "qwen_chat", "llama3_chat", "default"):
        assert name in e.value.hint


def test_templates_and_formats_import_without_torch():
    code = ("import sys, tunewiz.engine.contract.templates, tunewiz.engine.contract.formats;"
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); assert not bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
