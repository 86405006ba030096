"""`tunewiz import-xtuner`: XTuner Python configs become tunewiz YAML, through the real CLI.

The two configs below are written the way `xtuner copy-cfg` lays out its tutorial
recipes (a QLoRA chat fine-tune on Alpaca, and full incremental pretraining on a local
JSON file). Nothing in them is executed: they import XTuner, which is not installed here.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tunewiz.engine.contract.config import load_config

QLORA_ALPACA = '''\
import torch
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook,
                            LoggerHook, ParamSchedulerHook)
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR
from peft import LoraConfig
from torch.optim import AdamW
from transformers import (AutoModelForCausalLM, AutoTokenizer,
                          BitsAndBytesConfig)

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import alpaca_map_fn, template_map_fn_factory
from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import SupervisedFinetune
from xtuner.utils import PROMPT_TEMPLATE

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
pretrained_model_name_or_path = 'internlm/internlm2-chat-1_8b'
use_varlen_attn = False

# Data
alpaca_en_path = 'tatsu-lab/alpaca'
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 1024
pack_to_max_length = True

# Scheduler & Optimizer
batch_size = 2  # per_device
accumulative_counts = 8
dataloader_num_workers = 0
max_epochs = 3
optim_type = AdamW
lr = 1e-4
betas = (0.9, 0.95)
weight_decay = 0.01
max_norm = 1  # grad clip
warmup_ratio = 0.05

# Save
save_steps = 300
save_total_limit = -1  # Maximum checkpoints to keep (-1 means unlimited)

# Evaluate the generation performance during the training
evaluation_freq = 250
SYSTEM = 'You are a careful assistant.'
evaluation_inputs = [
    '请给我介绍五个上海的景点', 'Please tell me five scenic spots in Shanghai'
]

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
    trust_remote_code=True,
    padding_side='right')

model = dict(
    type=SupervisedFinetune,
    use_varlen_attn=use_varlen_attn,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=pretrained_model_name_or_path,
        trust_remote_code=True,
        torch_dtype=torch.float16,
        quantization_config=dict(
            type=BitsAndBytesConfig,
            load_in_4bit=True,
            load_in_8bit=False,
            llm_int8_threshold=6.0,
            llm_int8_has_fp16_weight=False,
            bnb_4bit_compute_dtype=torch.float16,
            bnb_4bit_use_double_quant=False,
            bnb_4bit_quant_type='fp4')),
    lora=dict(
        type=LoraConfig,
        r=32,
        lora_alpha=64,
        lora_dropout=0.05,
        bias='none',
        task_type='CAUSAL_LM'))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
alpaca_en = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path=alpaca_en_path),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=alpaca_map_fn,
    template_map_fn=dict(
        type=template_map_fn_factory, template=prompt_template),
    remove_unused_columns=True,
    shuffle_before_pack=True,
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=use_varlen_attn)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=alpaca_en,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=use_varlen_attn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(
        type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='float16')

param_scheduler = [
    dict(
        type=LinearLR,
        start_factor=1e-5,
        by_epoch=True,
        begin=0,
        end=warmup_ratio * max_epochs,
        convert_to_iter_based=True),
    dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_ratio * max_epochs,
        end=max_epochs,
        convert_to_iter_based=True)
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(
        type=EvaluateChatHook,
        tokenizer=tokenizer,
        every_n_iters=evaluation_freq,
        evaluation_inputs=evaluation_inputs,
        system=SYSTEM,
        prompt_template=prompt_template)
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(
        type=CheckpointHook,
        by_epoch=False,
        interval=save_steps,
        max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
log_processor = dict(by_epoch=False)
'''

FULL_PRETRAIN = '''\
"""Data format:
[
    {"text": "xxx"},
    ...
]
"""
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import CheckpointHook, IterTimerHook, LoggerHook
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import pretrain_map_fn
from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import SupervisedFinetune

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
pretrained_model_name_or_path = 'models/internlm2-1_8b'
use_varlen_attn = True

# Data
data_files = ['data/pretrain.json', 'data/more.json']
max_length = 4096
pack_to_max_length = False

# Scheduler & Optimizer
batch_size = 1  # per_device
accumulative_counts = 32
dataloader_num_workers = 4
max_epochs = 1
optim_type = AdamW
lr = 2e-5
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save
save_steps = 1000
save_total_limit = 3

# Evaluate the generation performance during the training
evaluation_freq = 500
SYSTEM = ''
evaluation_inputs = ['上海是', 'Shanghai is']

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
    trust_remote_code=False,
    padding_side='right')

model = dict(
    type=SupervisedFinetune,
    use_varlen_attn=use_varlen_attn,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=pretrained_model_name_or_path,
        trust_remote_code=False))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path='json', data_files=data_files),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=pretrain_map_fn,
    template_map_fn=None,
    remove_unused_columns=True,
    shuffle_before_pack=False,
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=use_varlen_attn)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=use_varlen_attn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(
        type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='float16')

param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=True, begin=0,
         end=warmup_ratio * max_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True,
         begin=warmup_ratio * max_epochs, end=max_epochs, convert_to_iter_based=True)
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(
        type=EvaluateChatHook,
        tokenizer=tokenizer,
        every_n_iters=evaluation_freq,
        evaluation_inputs=evaluation_inputs,
        system=SYSTEM)
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps,
                    max_keep_ckpts=save_total_limit),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)
log_processor = dict(by_epoch=False)
'''


def line_of(text: str, start: str) -> int:
    """1-based line of the first line of text that starts with start."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def import_config(cli, tmp_path: Path, name: str, text: str, *extra: str):
    src = tmp_path / f"{name}.py"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / f"{name}.yaml"
    result = cli("import-xtuner", str(src), "-o", str(out), *extra, cwd=tmp_path)
    return src, out, result


def test_qlora_alpaca_config_becomes_a_qlora_preset(cli, tmp_path):
    src, out, r = import_config(cli, tmp_path, "internlm2_chat_1_8b_qlora_alpaca_e3", QLORA_ALPACA)
    assert r.returncode == 0, r.stderr
    cfg = load_config(out)
    assert cfg.name == "internlm2_chat_1_8b_qlora_alpaca_e3"
    assert (cfg.method, cfg.stage) == ("qlora", "sft")
    assert cfg.model.path == "internlm/internlm2-chat-1_8b" and cfg.model.trust_remote_code is True
    assert (cfg.quant.bits, cfg.quant.type, cfg.quant.double_quant) == (4, "fp4", False)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target) == (32, 64, 0.05, "all-linear")
    assert cfg.data.files == ["tatsu-lab/alpaca"]
    assert (cfg.data.format, cfg.data.template, cfg.data.max_length, cfg.data.pack) == (
        "alpaca", "internlm2_chat", 1024, True)
    assert cfg.data.system == "You are a careful assistant."
    t = cfg.train
    assert (t.batch_size, t.grad_accum, t.epochs, t.lr, t.weight_decay, t.max_grad_norm, t.warmup_ratio) == (
        2, 8, 3, 1e-4, 0.01, 1.0, 0.05)
    assert (t.save_every, t.save_total_limit) == (300, 0)  # XTuner's -1 (keep all) is tunewiz's 0
    assert cfg.eval.every == 250
    assert cfg.eval.inputs == ["请给我介绍五个上海的景点", "Please tell me five scenic spots in Shanghai"]

    # what tunewiz cannot do the same way is named with its line, in line order
    listed = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{src}:")]
    where = lambda start: f"{src}:{line_of(QLORA_ALPACA, start)}: "  # noqa: E731
    assert listed[0].startswith(where("use_varlen_attn = False") + "use_varlen_attn = False not mapped (")
    assert listed[1].startswith(where("dataloader_num_workers") + "dataloader_num_workers = 0 not mapped (")
    assert listed[2].startswith(where("betas = ") + "betas = (0.9, 0.95) not mapped (tunewiz's AdamW uses")
    assert listed[3].startswith(where("        torch_dtype=") + "model.llm.torch_dtype = torch.float16 not mapped (")
    assert len(listed) == 4, r.stdout
    # the YAML says so too, so the file stands on its own
    text = out.read_text(encoding="utf-8")
    assert text.startswith(f"# tunewiz train {out}\n")
    assert all(f"#   {ln}" in text for ln in listed)


def test_full_custom_pretrain_config_becomes_a_full_pretrain_preset(cli, tmp_path):
    src, out, r = import_config(cli, tmp_path, "internlm2_1_8b_full_custom_pretrain_e1", FULL_PRETRAIN)
    assert r.returncode == 0, r.stderr
    cfg = load_config(out)
    assert (cfg.method, cfg.stage, cfg.data.format) == ("full", "pretrain", "pretrain")
    assert cfg.model.path == "models/internlm2-1_8b"
    assert cfg.model.trust_remote_code is False
    assert cfg.data.files == ["data/pretrain.json", "data/more.json"]
    assert (cfg.data.template, cfg.data.max_length, cfg.data.pack, cfg.data.system) == ("auto", 4096, False, "")
    t = cfg.train
    assert (t.batch_size, t.grad_accum, t.epochs, t.lr, t.weight_decay, t.max_grad_norm, t.warmup_ratio) == (
        1, 32, 1, 2e-5, 0, 1.0, 0.03)
    assert (t.save_every, t.save_total_limit, t.seed, t.attention) == (1000, 3, 42, "varlen")
    assert (cfg.eval.every, cfg.eval.inputs) == (500, ["上海是", "Shanghai is"])
    listed = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{src}:")]
    assert listed == [f"{src}:{line_of(FULL_PRETRAIN, 'dataloader_num_workers')}: dataloader_num_workers = 4 "
                      "not mapped (tunewiz reads its tokenized data cache in the training process)"]
    assert "not a folder here" in r.stdout  # the model must be a local folder to train


def test_an_existing_output_is_never_replaced(cli, tmp_path):
    out = tmp_path / "mine.yaml"
    out.write_text("name: mine\n", encoding="utf-8")
    src = tmp_path / "cfg.py"
    src.write_text(FULL_PRETRAIN, encoding="utf-8")
    r = cli("import-xtuner", str(src), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 1
    assert out.read_text(encoding="utf-8") == "name: mine\n"
    assert str(out) in r.stderr and "Traceback" not in r.stderr


def test_default_output_sits_beside_the_config(cli, tmp_path):
    src = tmp_path / "my_cfg.py"
    src.write_text(QLORA_ALPACA, encoding="utf-8")
    r = cli("import-xtuner", str(src), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_config(tmp_path / "my_cfg.yaml").method == "qlora"


def one_error_line(r) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_syntax_error_is_one_line_with_file_and_line(cli, tmp_path):
    broken = QLORA_ALPACA.replace("max_length = 1024", "max_length = = 1024")
    src, out, r = import_config(cli, tmp_path, "broken", broken)
    line = one_error_line(r)
    assert re.search(rf"{re.escape(str(src))}:{line_of(broken, 'max_length = =')}: not valid Python", line)
    assert not out.exists()


def test_a_python_file_that_is_no_xtuner_config_is_refused(cli, tmp_path):
    src, out, r = import_config(cli, tmp_path, "script", "import os\nprint(os.getcwd())\n")
    assert f"{src}:1: not an XTuner config" in one_error_line(r)
    assert not out.exists()


def test_a_value_tunewiz_refuses_is_named_at_its_line(cli, tmp_path):
    bad = QLORA_ALPACA.replace("lr = 1e-4", "lr = 0")
    src, out, r = import_config(cli, tmp_path, "bad", bad)
    line = one_error_line(r)
    assert f"{src}:{line_of(bad, 'lr = 0')}: lr = 0 cannot be used: train.lr: must be above 0" in line


def test_nothing_in_the_config_runs(cli, tmp_path):
    marker = tmp_path / "ran"
    text = (f"open({str(marker)!r}, 'w').write('x')\n"
            + QLORA_ALPACA.replace("lr = 1e-4", "lr = __import__('os').getpid()"))
    src, out, r = import_config(cli, tmp_path, "sneaky", text)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    # a value only running the file would give is listed, and tunewiz's default is kept
    at = line_of(text, "lr = __import__")
    assert f"{src}:{at}: lr = __import__('os').getpid() not mapped (not a value that can be read" in r.stdout
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["train"]["lr"] == 2e-4
