"""The config schema: defaults, round trip, and errors that name the key and line."""

from pathlib import Path

import pytest

from tunewiz.engine.config import Config, config_from_dict, default_lr, dump_yaml, field_docs, load_config
from tunewiz.engine.errors import ConfigError
from tunewiz.engine.preset_catalog import list_presets


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_follow_xtuner_tutorials():
    c = Config()
    assert (c.lora.r, c.lora.alpha, c.lora.dropout, c.lora.target) == (64, 16, 0.1, "all-linear")
    assert c.train.warmup_ratio == 0.03 and c.train.max_grad_norm == 1.0


def test_round_trip(tmp_path):
    c = config_from_dict({"name": "x", "method": "full", "train": {"lr": 2e-5, "max_steps": 3},
                          "layout": {"gpus": [0, 1]}})
    again = load_config(write(tmp_path, dump_yaml(c)))
    assert again == c


def test_every_field_is_documented():
    docs = field_docs()
    assert "train.lr" in docs and all(docs.values()), [k for k, v in docs.items() if not v]


@pytest.mark.parametrize("text,needle", [
    ("name: a\ntrain:\n  lrr: 1\n", "c.yaml:3: unknown key train.lrr (did you mean train.lr?)"),
    ("name: a\ntrain:\n  lr: fast\n", "c.yaml:3: train.lr must be a number, got 'fast'"),
    ("method: lorax\n", "c.yaml:1: method: 'lorax' is not one of full, lora, qlora"),
    ("data:\n  files: data.json\n", "c.yaml:2: data.files must be a list of text"),
    ("train: [1]\n", "train must be a mapping"),
    ("name: [a\n", "c.yaml:2: not valid YAML"),
    ("layout:\n  nnodes: 2\n  node_rank: 2\n", "node_rank: 2 is outside 0..1"),
])
def test_errors_name_key_and_line(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert needle in e.value.one_line()


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_configs_are_data_not_code(tmp_path):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n"))


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: p.stem)
def test_every_preset_validates_and_starts_with_its_command(preset):
    cfg = load_config(preset)
    first = preset.read_text().splitlines()[0]
    assert first == f"# tunewiz train presets/{preset.name}"
    if not preset.stem.startswith("demo"):  # the CPU demo trains briefly at a higher rate
        assert cfg.train.lr == default_lr(cfg.method)
    # every key line carries a comment or is a section header
    for line in preset.read_text().splitlines()[2:]:
        assert "#" in line, f"{preset.name}: uncommented line {line!r}"


def test_presets_cover_methods_and_stages():
    got = {(load_config(p).method, load_config(p).stage) for p in list_presets()}
    assert {(m, s) for m in ("full", "lora", "qlora") for s in ("sft", "pretrain")} <= got


def test_learning_rates_written_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads `2e-4` as text; tunewiz takes it as the number everyone means."""
    cfg = load_config(write(tmp_path, "name: a\ntrain:\n  lr: 2e-4\n  weight_decay: 1E-2\n"))
    assert cfg.train.lr == 2e-4 and cfg.train.weight_decay == 0.01
    with pytest.raises(ConfigError, match="train.lr must be a number, got 'nan'"):
        load_config(write(tmp_path, "name: a\ntrain:\n  lr: nan\n"))
