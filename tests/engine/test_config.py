"""The config schema: defaults, round trip, and errors that name the key and line."""

import os
from pathlib import Path

import pytest

from tunewiz.engine.contract.config import Config, config_from_dict, default_lr, dump_yaml, field_docs, load_config
from tunewiz.engine.contract.errors import ConfigError
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


# ------------------------------------------------------------------ class 10: ranges, with the line

@pytest.mark.parametrize("section,key,value,needle", [
    ("train", "lr", -1e-4, "c.yaml:3: train.lr: must be above 0"),
    ("train", "lr", ".nan", "c.yaml:3: train.lr: must be a finite number"),
    ("train", "weight_decay", -0.01, "c.yaml:3: train.weight_decay: must be 0 or more"),
    ("train", "max_grad_norm", -1.0, "c.yaml:3: train.max_grad_norm: must be above 0"),
    ("train", "max_grad_norm", 0, "c.yaml:3: train.max_grad_norm: must be above 0"),
    ("train", "epochs", 0, "c.yaml:3: train.epochs: must be above 0"),
    ("train", "epochs", -1, "c.yaml:3: train.epochs: must be above 0"),
    ("train", "epochs", ".inf", "c.yaml:3: train.epochs: must be a finite number"),
    ("train", "warmup_ratio", 1.01, "c.yaml:3: train.warmup_ratio: must be within 0..1"),
    ("train", "seed", 2 ** 40, "c.yaml:3: train.seed: must be within 0..4294967295"),
    ("lora", "dropout", 1.0, "c.yaml:3: lora.dropout: must be within 0..1 (1 excluded)"),
    ("lora", "dropout", -0.5, "c.yaml:3: lora.dropout: must be within 0..1"),
    ("lora", "alpha", -16, "c.yaml:3: lora.alpha: must be at least 1"),
    ("lora", "target", "[]", "c.yaml:3: lora.target: names no module"),
    ("layout", "gpus", 0, "c.yaml:3: layout.gpus: 0 is not all, a count"),
    ("layout", "master_port", 0, "c.yaml:3: layout.master_port: must be within 1..65535"),
    ("layout", "master_addr", "''", "c.yaml:3: layout.master_addr"),
    ("data", "template", "nope", "c.yaml:3: data.template: 'nope' is not a template (use one of: auto,"),
    ("eval", "max_new_tokens", 0, "c.yaml:3: eval.max_new_tokens: must be at least 1"),
])
def test_ranges_name_the_key_and_its_line(tmp_path, section, key, value, needle):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f"name: a\n{section}:\n  {key}: {value}\n"))
    assert needle in e.value.one_line()


def test_edges_of_the_ranges_are_accepted(tmp_path):
    cfg = load_config(write(tmp_path, "name: a.b-c_d\ntrain:\n  warmup_ratio: 1\n  weight_decay: 0\n  seed: 0\n"
                                      "  save_total_limit: 0\nlora:\n  dropout: 0\neval:\n  every: 0\n"))
    assert cfg.train.warmup_ratio == 1 and cfg.lora.dropout == 0 and cfg.name == "a.b-c_d"


@pytest.mark.parametrize("name,needle", [
    ("a\0b", "'a\\x00b' is not a valid run name"), ("a\nb", "'a\\nb' is not a valid run name"),
    ("a b", "is not a valid run name"), ("a/b", "is not a valid run name"), ("..", "is not a valid run name"),
    ("$(id)", "is not a valid run name"), ("x" * 224, "is longer than 223 bytes"),
    ("é" * 112, "is longer than 223 bytes"),
])
def test_names_are_words_that_fit_a_folder_name(tmp_path, name, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"name": name})
    assert needle in e.value.one_line() and "\n" not in e.value.one_line()
    config_from_dict({"name": "x" * 223})  # the longest that leaves room for the timestamp


def test_output_dir_home_is_expanded_not_a_folder_named_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_config(write(tmp_path, "name: a\noutput_dir: ~/runs\ndata:\n  cache_dir: ~/cache\n"))
    assert cfg.output_dir == str(tmp_path / "home" / "runs")
    assert cfg.data.cache_dir == str(tmp_path / "home" / "cache")


def test_output_dir_that_is_a_file_is_refused_at_load(tmp_path):
    (tmp_path / "f").write_text("x")
    for value in ("f", "f/runs"):
        with pytest.raises(ConfigError) as e:
            load_config(write(tmp_path, f"name: a\noutput_dir: {tmp_path / value}\n"))
        assert "c.yaml:2: output_dir:" in e.value.one_line() and "is a file, not a folder" in e.value.one_line()


def test_output_dir_not_writable_names_the_key(tmp_path, monkeypatch):
    """Whatever stops the run directory from being made (permissions, a read-only disk, a
    name too long) is one line naming output_dir's line, and nothing is left behind."""
    from tunewiz.engine import launch
    from tunewiz.engine.contract import rundir

    cfg = load_config(write(tmp_path, f"name: a\noutput_dir: {tmp_path / 'ro'}\n"))

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro"))

    monkeypatch.setattr(rundir, "new_run_dir", refuse)
    with pytest.raises(ConfigError) as e:
        launch.prepare_run(cfg)
    assert e.value.one_line().startswith(f"{tmp_path / 'c.yaml'}:2: output_dir: cannot create a run directory")
    assert "Permission denied" in e.value.one_line()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: the monkeypatched case above covers it")
def test_output_dir_read_only_for_real(tmp_path):
    from tunewiz.engine import launch

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        cfg = load_config(write(tmp_path, f"name: a\noutput_dir: {ro / 'runs'}\n"))
        with pytest.raises(ConfigError, match="output_dir: cannot create a run directory"):
            launch.prepare_run(cfg)
    finally:
        ro.chmod(0o700)


def test_lora_target_matching_nothing_names_the_models_modules(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM

    from tunewiz.engine.models import wrap_for_method

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    cfg = load_config(write(tmp_path, "name: a\nlora:\n  r: 2\n  target: [q_proj, qkv]\n"
                                      "train:\n  gradient_checkpointing: false\n"))
    with pytest.raises(ConfigError) as e:
        wrap_for_method(model, cfg)
    line = e.value.one_line()
    assert line.startswith(f"{tmp_path / 'c.yaml'}:4: lora.target: 'qkv' matches no module of the model")
    assert "its linear modules: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in line
    cfg = load_config(write(tmp_path, "name: a\nlora:\n  r: 2\n  target: '.*\\.q_proj'\n"
                                      "train:\n  gradient_checkpointing: false\n"))
    assert wrap_for_method(model, cfg) is not None  # a pattern that matches is peft's to apply


# ------------------------------------------------------------------ class 9: hostile YAML stays cheap

BILLION_LAUGHS = (
    "name: [&a [l,l,l,l,l,l,l,l,l], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b],"
    " &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e],"
    " &g [*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g], &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]]\n")


@pytest.mark.parametrize("text,needle", [
    (BILLION_LAUGHS, "c.yaml:1: the aliases here expand to more than 100,000 values"),
    ("a: &a [1, 2]\nname: &n [*n]\n", "c.yaml:2: an alias names a value that contains it"),
    ("x: &x {k: &y {k2: *x}}\n", "c.yaml:1: an alias names a value that contains it"),
    ("name: " + "[" * 2000 + "]" * 2000 + "\n", "c.yaml:1: nested more than 64 levels deep"),
    ("name: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n", "nested more than 64 levels deep"),
    ("train:\n  seed: " + "7" * 10_000 + "\n", "c.yaml:2: cannot read this value (an integer too long to read)"),
    ("name: " + "x" * 1_000_000 + "\n", "c.yaml:1: name: 'xxxx"),
    ("train:\n  lr: [" + ", ".join(["1"] * 50_000) + "]\n", "train.lr must be a number, got [1, 1, 1, 1, 1, 1, ...]"),
])
def test_hostile_yaml_fails_fast_with_a_short_message(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    line = e.value.one_line()
    assert needle in line and len(line) < 400 and "\n" not in line, line[:500]


def test_the_billion_laughs_is_small_and_refused_without_expanding(tmp_path, monkeypatch):
    """The refusal comes before any Python object is built from the document."""
    import yaml

    assert len(BILLION_LAUGHS) < 400
    built = []
    monkeypatch.setattr(yaml.SafeLoader, "construct_document", lambda self, node: built.append(node))
    with pytest.raises(ConfigError, match="expand to more than"):
        load_config(write(tmp_path, BILLION_LAUGHS))
    assert not built


def test_aliases_within_bounds_still_work(tmp_path):
    cfg = load_config(write(tmp_path, "name: a\neval:\n  inputs: &p [hi, there]\ndata:\n  files: *p\n"))
    assert cfg.data.files == ["hi", "there"]


def test_a_huge_config_file_is_refused_unread(tmp_path):
    p = tmp_path / "c.yaml"
    with open(p, "wb") as f:
        f.truncate(5 << 20)
    with pytest.raises(ConfigError, match="too large for a config"):
        load_config(p)


# ------------------------------------------------------------------ class 5: the run's config is self-contained

def test_the_runs_config_holds_absolute_paths(tmp_path, monkeypatch):
    """Relative paths mean the directory `tunewiz train` ran in; the run's own config keeps
    them absolute so that --resume, attach and convert from elsewhere read the same files.
    Hub ids and demo stay names."""
    from tunewiz.engine import launch
    from tunewiz.engine.contract import rundir, sources

    work = tmp_path / "project"
    (work / "data").mkdir(parents=True)
    (work / "data" / "a.jsonl").write_text('{"text": "x"}\n')
    (work / "model").mkdir()
    monkeypatch.chdir(work)
    cfg = load_config(write(work, "name: a\noutput_dir: runs\nmodel:\n  path: model\n"
                                  "data:\n  files: [data/a.jsonl, data, owner/set:train, org/set/cfg:test]\n"
                                  "  cache_dir: cache\n"))
    run = launch.prepare_run(cfg)
    assert run.parent == work / "runs"
    own = load_config(run / rundir.CONFIG)
    assert own.output_dir == str(work / "runs") and own.model.path == str(work / "model")
    assert own.data.cache_dir == str(work / "cache")
    assert own.data.files == [str(work / "data" / "a.jsonl"), str(work / "data"), "owner/set:train",
                              "org/set/cfg:test"]
    assert cfg.data.files[0] == "data/a.jsonl"  # the user's own config is not rewritten
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = load_config(run / rundir.CONFIG)
    [src] = sources.resolve(again.data.files[0])
    assert src.parts[0].path == work / "data" / "a.jsonl"
    assert load_config(run / rundir.CONFIG) == own


def test_demo_stays_demo_in_the_runs_config(tmp_path, monkeypatch):
    from tunewiz.engine.contract.config import absolute_paths

    monkeypatch.chdir(tmp_path)
    assert absolute_paths(Config()).model.path == "demo"
    assert absolute_paths(Config()).data.cache_dir == ""  # empty: the default cache, still


@pytest.mark.parametrize("text,needle", [
    ("train:\n  lr: 1" + "0" * 400 + "\n", "c.yaml:2: train.lr: 1000"),
    ("train:\n  batch_size: -" + "9" * 4000 + "\n", "c.yaml:2: train.batch_size: -999"),
    ("data:\n  max_length: " + str(2 ** 70) + "\n", "c.yaml:2: data.max_length: 1180591620717411303424 is out of range"),
])
def test_numbers_past_64_bits_are_out_of_range(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert needle in e.value.one_line() and len(e.value.one_line()) < 300


def test_the_zero_stage_and_offload_are_read_from_layout_deepspeed_in_one_place():
    from tunewiz.engine.contract.config import DEEPSPEED

    got = {ds: (config_from_dict({"layout": {"deepspeed": ds}}).layout.zero_stage,
                config_from_dict({"layout": {"deepspeed": ds}}).layout.offloads) for ds in DEEPSPEED}
    assert got == {"none": (0, False), "zero1": (1, False), "zero2": (2, False), "zero3": (3, False),
                   "zero2_offload": (2, True), "zero3_offload": (3, True)}
