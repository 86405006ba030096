"""Property-based fuzzing of the config loader (hypothesis, a bounded budget).

Whatever a config file holds, loading it either gives a Config whose every field is in its
range and that writes back to itself, or a ConfigError: one short line that starts with the
file's name. Never another exception, never a long message.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import fields, is_dataclass
from pathlib import Path

import typing

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewiz.engine.contract.config import Config, dump_yaml, load_config
from tunewiz.engine.contract.errors import ConfigError

BUDGET = settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Text YAML can carry (no lone surrogates: they cannot be written as UTF-8).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.integers(-3, 70000),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2), TEXT,
    st.sampled_from(["all", "all-linear", "auto", "demo", "lora", "full", "qlora", "nf4", "sft", "~/x", "",
                     ".nan", "2e-4", "1E-2", "zero3", "bf16", "true", "null"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)


def schema_keys(cls=Config) -> dict[str, list[str]]:
    hints = typing.get_type_hints(cls)
    return {f.name: ([g.name for g in fields(hints[f.name])] if is_dataclass(hints[f.name]) else [])
            for f in fields(cls)}


KEYS = schema_keys()


@st.composite
def near_configs(draw) -> dict:
    """Mostly the schema's own keys with values of every type, some unknown keys."""
    out: dict = {}
    for top in draw(st.lists(st.sampled_from(sorted(KEYS) + ["bogus"]), max_size=6, unique=True)):
        leaves = KEYS.get(top) or []
        if leaves and draw(st.booleans()):
            out[top] = {leaf: draw(VALUES) for leaf in draw(st.lists(st.sampled_from(leaves + ["nope"]),
                                                                    max_size=4, unique=True))}
        else:
            out[top] = draw(VALUES)
    return out


def check(path: Path) -> None:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        line = e.one_line()
        assert line.startswith(str(path)), line[:300]
        assert "\n" not in line and "\r" not in line and len(line) < 800, line[:900]
        return
    t = cfg.train
    assert all(math.isfinite(v) for v in (t.lr, t.epochs, t.warmup_ratio, t.weight_decay, t.max_grad_norm))
    assert t.lr > 0 and t.epochs > 0 and 0 <= t.warmup_ratio <= 1 and t.weight_decay >= 0 and t.max_grad_norm > 0
    assert 0 <= cfg.lora.dropout < 1 and cfg.name and "/" not in cfg.name and "\0" not in cfg.name
    assert not cfg.output_dir.startswith("~")
    path.write_text(dump_yaml(cfg), encoding="utf-8")
    assert load_config(path) == cfg  # what it writes back reads as itself


def write_and_check(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        check(path)


@BUDGET
@given(near_configs())
def test_near_valid_configs_load_or_fail_in_one_line(data):
    write_and_check(yaml.safe_dump(data, allow_unicode=True))


@BUDGET
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=200))
def test_any_text_loads_or_fails_in_one_line(text):
    write_and_check(text)


@BUDGET
@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from(["name", "train:\n  lr", "data:\n  files",
                                                                "eval:\n  inputs"]))
def test_nested_aliases_stay_cheap(levels, fan_out, key):
    """Anchors that each repeat the previous one fan_out times: fan_out ** levels values."""
    items = ["&a0 [" + ", ".join(["x"] * fan_out) + "]"]
    items += [f"&a{k} [" + ", ".join([f"*a{k - 1}"] * fan_out) + "]" for k in range(1, levels)]
    write_and_check(f"{key}: [{', '.join(items)}]\n")
