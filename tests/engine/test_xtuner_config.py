"""Reading XTuner configs as data: the variants of the recipes users bring (custom data,
several datasets, plain LoRA, 8-bit, other map functions and templates) and files that try
to be expensive or to run code. Each case checks the tunewiz config a user gets and what is
listed as not mapped."""

from __future__ import annotations

import pytest

from tunewiz.engine.contract.config import config_from_dict, load_config
from tunewiz.engine.contract.errors import ConfigError
from tunewiz.engine.contract.xtuner_config import import_xtuner, import_xtuner_text

HEAD = """\
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from xtuner.dataset import ConcatDataset, process_hf_dataset
from xtuner.dataset.map_fns import (alpaca_map_fn, oasst1_map_fn, openai_map_fn,
                                    template_map_fn_factory)
from xtuner.model import SupervisedFinetune
from xtuner.utils import PROMPT_TEMPLATE, SYSTEM_TEMPLATE

pretrained_model_name_or_path = 'models/qwen'
prompt_template = PROMPT_TEMPLATE.qwen_chat
max_length = 512
"""

LORA = """
model = dict(
    type=SupervisedFinetune,
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path),
    lora=dict(type=LoraConfig, r=8, lora_alpha=16, lora_dropout=0.0,
              target_modules=['q_proj', 'v_proj']))
"""


def dataset(map_fn: str = "alpaca_map_fn", files: str = "dict(train=data_path)", name: str = "train_dataset",
            template: str = "dict(type=template_map_fn_factory, template=prompt_template)") -> str:
    return f"""
{name} = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path='json', data_files={files}),
    max_length=max_length,
    dataset_map_fn={map_fn},
    template_map_fn={template},
    pack_to_max_length=True)
"""


def convert(text: str):
    imported = import_xtuner_text(text, "cfg.py", "cfg")
    return config_from_dict(imported.config), imported.unmapped_lines()


def test_custom_conversation_data_and_plain_lora():
    cfg, unmapped = convert(HEAD + "data_path = 'data/chat.jsonl'\n" + LORA + dataset("None")
                            + "train_dataloader = dict(batch_size=4, dataset=train_dataset)\n")
    assert (cfg.method, cfg.stage, cfg.data.format, cfg.data.template) == ("lora", "sft", "conversation", "qwen_chat")
    assert cfg.data.files == ["data/chat.jsonl"]
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target) == (8, 16, 0.0, ["q_proj", "v_proj"])
    assert (cfg.train.batch_size, cfg.data.max_length, cfg.train.lr) == (4, 512, 2e-4)
    assert unmapped == []


def test_several_datasets_are_mixed():
    text = (HEAD + LORA + dataset(files="'a.json'", name="first") + dataset(files="['b.json', 'c.json']", name="second")
            + "train_dataloader = dict(dataset=dict(type=ConcatDataset, datasets=[first, second]))\n")
    cfg, unmapped = convert(text)
    assert cfg.data.files == ["a.json", "b.json", "c.json"] and cfg.data.format == "alpaca"
    assert unmapped == []


def test_openai_records_and_8bit():
    text = HEAD + LORA.replace(
        "pretrained_model_name_or_path),",
        "pretrained_model_name_or_path,\n             quantization_config=dict(type=BitsAndBytesConfig, "
        "load_in_8bit=True)),") + "data_path = 'x.json'\n" + dataset("openai_map_fn")
    cfg, _ = convert(text)
    assert (cfg.method, cfg.quant.bits, cfg.data.format) == ("qlora", 8, "openai")


def test_a_map_function_of_the_file_without_template_is_pretraining():
    text = (HEAD.replace("prompt_template = PROMPT_TEMPLATE.qwen_chat\n", "")
            + "def my_text_fn(example):\n    return {'conversation': [{'input': '', 'output': example['body']}]}\n"
            + "data_path = 'x.json'\n" + LORA + dataset("my_text_fn", template="None"))
    cfg, unmapped = convert(text)
    assert (cfg.stage, cfg.data.format) == ("pretrain", "pretrain")
    assert unmapped == []


def test_what_cannot_be_carried_over_is_listed_by_line():
    text = (HEAD.replace("PROMPT_TEMPLATE.qwen_chat", "PROMPT_TEMPLATE.vicuna")
            + "sequence_parallel_size = 2\naccumulative_counts = 16\naccumulative_counts *= sequence_parallel_size\n"
            + "SYSTEM = SYSTEM_TEMPLATE.alpaca\nhuge = 10 ** 10 ** 10\nmystery_setting = 'x'\n"
            + "data_path = 'x.json'\n" + LORA + dataset("oasst1_map_fn"))
    cfg, unmapped = convert(text)
    lines = text.splitlines()
    at = lambda start: next(i for i, ln in enumerate(lines, 1) if ln.startswith(start))  # noqa: E731
    assert cfg.train.grad_accum == 32  # what XTuner computes: 16 * 2
    assert (cfg.data.template, cfg.data.format, cfg.data.system) == ("auto", "auto", "")
    expected = [
        (at("prompt_template"), "prompt_template = PROMPT_TEMPLATE.vicuna", "tunewiz has no template of that name"),
        (at("sequence_parallel_size"), "sequence_parallel_size = 2", "tunewiz has no sequence parallelism"),
        (at("SYSTEM"), "SYSTEM = SYSTEM_TEMPLATE.alpaca", "XTuner's built-in text"),
        (at("huge"), "huge = 10 ** 10 ** 10", "not a value that can be read without running the file"),
        (at("mystery_setting"), "mystery_setting = 'x'", "tunewiz has no such setting"),
        (at("    dataset_map_fn=oasst1"), "dataset_map_fn = oasst1_map_fn", "no tunewiz format reads these records"),
    ]
    assert len(unmapped) == len(expected), unmapped
    for got, (line, said, why) in zip(unmapped, expected):
        assert got.startswith(f"cfg.py:{line}: {said} not mapped ({why}"), got


def test_the_yaml_loads_and_names_what_was_left(tmp_path):
    src = tmp_path / "x.py"
    src.write_text(HEAD + "data_path = 'x.json'\n" + LORA + dataset() + "weird = 1\n", encoding="utf-8")
    imported = import_xtuner(src)
    out = tmp_path / "x.yaml"
    out.write_text(imported.yaml_text(str(out)), encoding="utf-8")
    cfg = load_config(out)
    assert (cfg.name, cfg.method, cfg.data.format) == ("x", "lora", "alpaca")
    assert f"{src}:{len(src.read_text().splitlines())}: weird = 1 not mapped" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("text, said", [
    ("x = (\n", "cfg.py:1: not valid Python"),
    ("model = 'internlm'\n", "cfg.py:1: not an XTuner config"),
    ("x = " + "(" * 5000 + ")" * 5000 + "\n", "cfg.py:1:"),
])
def test_bad_files_are_one_error_with_file_and_line(text, said):
    with pytest.raises(ConfigError) as e:
        import_xtuner_text(text, "cfg.py")
    assert e.value.one_line().startswith(said) and "\n" not in e.value.one_line()


def test_load_dataset_called_directly_and_splits():
    text = HEAD + LORA + dataset(files="dict(train=['a.jsonl'], validation='v.jsonl')").replace(
        "dict(type=load_dataset, path='json', data_files=", "load_dataset('json', data_files=")
    cfg, unmapped = convert(text)
    assert cfg.data.files == ["a.jsonl"] and unmapped == []


def test_a_value_tunewiz_refuses_names_the_xtuner_key_and_line():
    text = HEAD + LORA.replace("r=8", "r=0") + "data_path = 'x.json'\n" + dataset()
    with pytest.raises(ConfigError) as e:
        convert(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "r=0" in ln)
    assert e.value.msg.startswith(f"cfg.py:{line}: r = 0 cannot be used: lora.r: must be at least 1")


FULL = (HEAD + "from torch.optim import AdamW\nfrom mmengine.optim import CosineAnnealingLR, LinearLR\n"
        + "from mmengine.hooks import CheckpointHook\nfrom xtuner.engine.hooks import EvaluateChatHook\n"
        + "from xtuner.engine.runner import TrainLoop\n"
        + "data_path = 'x.json'\nbatch_size = 2\nlr = 1e-4\nwarmup_ratio = 0.1\nmax_epochs = 2\n" + LORA
        + dataset() + """
train_dataloader = dict(batch_size=batch_size, dataset=train_dataset)
optim_wrapper = dict(optimizer=dict(type=AdamW, lr=lr), clip_grad=dict(max_norm=1))
param_scheduler = [dict(type=LinearLR, end=warmup_ratio * max_epochs), dict(type=CosineAnnealingLR, eta_min=0)]
train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)
custom_hooks = [dict(type=EvaluateChatHook, every_n_iters=10, evaluation_inputs=['hi'], system='')]
default_hooks = dict(checkpoint=dict(type=CheckpointHook, interval=100, max_keep_ckpts=2))
""")


@pytest.mark.parametrize("mutation", ["drop", "None", "'x'", "-1", "[]", "dict()", "f()"])
def test_any_edit_of_a_config_gives_a_config_or_one_error(mutation):
    """Each line dropped, or each value replaced, in turn: never anything but a result or a
    ConfigError with a file:line (no other exception reaches the user)."""
    cfg, unmapped = convert(FULL)
    assert (cfg.train.lr, cfg.train.warmup_ratio, cfg.train.epochs, cfg.eval.every, cfg.train.save_every) == (
        1e-4, 0.1, 2, 10, 100) and unmapped == []
    lines = FULL.splitlines()
    for i, line in enumerate(lines):
        if mutation == "drop":
            edited = lines[:i] + lines[i + 1:]
        elif "=" in line and not line.lstrip().startswith(("from", "import", "#")):
            key, _, _ = line.partition("=")
            edited = lines[:i] + [f"{key}= {mutation}"] + lines[i + 1:]
        else:
            continue
        try:
            imported = import_xtuner_text("\n".join(edited) + "\n", "cfg.py")
        except ConfigError as e:
            assert e.msg.startswith("cfg.py:"), e.msg
        else:
            config_from_dict(imported.config)
            assert all(ln.startswith("cfg.py:") for ln in imported.unmapped_lines())
