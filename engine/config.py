"""The config schema: the one contract for what a run is. Torch-free.

A config is YAML data (safe-loaded, never executed). Every field below is documented in
its ``doc`` metadata; ``load_config`` rejects unknown keys and wrong types, naming the
key, its line and the fix. ``to_dict`` / ``dump_yaml`` write it back exactly.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import yaml

from .attention import CHOICES as ATTENTION_CHOICES
from .errors import ConfigError

METHODS = ("full", "lora", "qlora")
STAGES = ("sft", "pretrain")
FORMATS = ("auto", "pretrain", "conversation", "alpaca", "openai", "sharegpt")
DEEPSPEED = ("none", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")


def doc(text: str, default: Any = MISSING, factory: Any = MISSING):
    """A dataclass field with its documentation attached (shown by the wizard)."""
    if factory is not MISSING:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class ModelConfig:
    path: str = doc('"demo" (bundled SmolLM2-135M-Instruct) or a local Hugging Face folder', "demo")
    trust_remote_code: bool = doc("run the model folder's own Python code; opt-in only", False)


@dataclass
class LoraConfig:
    r: int = doc("LoRA rank", 64)
    alpha: int = doc("LoRA alpha (scale = alpha / r)", 16)
    dropout: float = doc("dropout on the LoRA input", 0.1)
    target: Union[str, list[str]] = doc('"all-linear" or a list of module names', "all-linear")


@dataclass
class QuantConfig:
    bits: int = doc("4 or 8 (qlora only)", 4)
    type: str = doc("nf4 or fp4", "nf4")
    double_quant: bool = doc("quantize the quantization constants too", True)


@dataclass
class DataConfig:
    files: list[str] = doc("data sources, several may be mixed: JSON/JSONL, Parquet, Arrow, CSV/TSV files, "
                           "save_to_disk folders, folders of data files, hub ids (owner/name[/config][:split])",
                           factory=list)
    format: str = doc("auto | pretrain | conversation | alpaca | openai | sharegpt", "auto")
    template: str = doc("auto = the tokenizer's chat template, or a named template", "auto")
    system: str = doc("system prompt added to every conversation that has none", "")
    max_length: int = doc("tokens per sequence; longer samples are truncated", 2048)
    pack: bool = doc("pack samples into max_length sequences (per-sample position ids)", True)
    num_proc: Union[int, None] = doc("processes that tokenize (null: one per available core)", None)
    cache_dir: str = doc("where tokenized data is cached (empty: $TUNEWIZ_DATA_CACHE, else "
                         "~/.cache/tunewiz/data); one folder per data + tokenizer + settings", "")


@dataclass
class TrainConfig:
    epochs: float = doc("passes over the data (ignored when max_steps is set)", 3)
    max_steps: Union[int, None] = doc("optimizer steps; overrides epochs when set", None)
    batch_size: int = doc("sequences per device per micro-step", 1)
    grad_accum: int = doc("micro-steps per optimizer step", 16)
    lr: float = doc("peak learning rate (2e-4 for (Q)LoRA, 2e-5 for full)", 2.0e-4)
    warmup_ratio: float = doc("fraction of steps of linear warmup before cosine decay", 0.03)
    weight_decay: float = doc("AdamW weight decay", 0.0)
    max_grad_norm: float = doc("gradient clipping norm", 1.0)
    seed: int = doc("random seed (data order, dropout, init)", 0)
    save_every: int = doc("checkpoint every N optimizer steps", 500)
    save_total_limit: int = doc("keep this many newest checkpoints", 2)
    gradient_checkpointing: bool = doc("recompute activations to save memory", True)
    dtype: str = doc("auto (bf16 on capable GPUs, fp16 on older, fp32 on CPU) | bf16 | fp16 | fp32", "auto")
    attention: str = doc("auto | varlen | sdpa | eager | flex_attention (auto: varlen on CUDA, else sdpa)", "auto")
    compile: Union[bool, str] = doc(
        "auto | true | false: compile each transformer layer (torch.compile; the first steps include "
        "the compile, about 30 s). auto: on for one-process CUDA runs without DeepSpeed, where it was "
        "measured faster and leaner than uncompiled (docs/bench.md); off on CPUs, under DeepSpeed "
        "(its parameter hooks) and with several processes (not yet measured there)", "auto")
    fused_loss: bool = doc("compute the loss chunk by chunk from the last hidden states, never holding the "
                           "full logits (plain-head architectures, no DeepSpeed; others use the model's own)",
                           True)


@dataclass
class EvalConfig:
    inputs: list[str] = doc("prompts the model answers during training",
                            factory=lambda: ["请介绍一下你自己", "Please introduce yourself"])
    every: int = doc("answer the prompts every N optimizer steps (0 = only before/after)", 500)
    max_new_tokens: int = doc("length of each answer", 64)


@dataclass
class LayoutConfig:
    gpus: Union[str, int, list[int]] = doc('"all", a count, or a list of GPU ids', "all")
    nnodes: int = doc("number of nodes", 1)
    node_rank: int = doc("this node's rank (0 = master)", 0)
    master_addr: str = doc("address of node 0", "127.0.0.1")
    master_port: int = doc("port on node 0", 29500)
    deepspeed: str = doc("none | zero1 | zero2 | zero3 | zero2_offload | zero3_offload", "none")
    join_timeout_s: int = doc("seconds to wait for every node to join", 300)


@dataclass
class Config:
    name: str = doc("run name; the run directory is <output_dir>/<name>-<timestamp>", "run")
    output_dir: str = doc("folder that holds the runs", "work_dirs")
    model: ModelConfig = doc("base model", factory=ModelConfig)
    method: str = doc("full | lora | qlora", "lora")
    stage: str = doc("sft (loss on answers) | pretrain (loss on every token)", "sft")
    lora: LoraConfig = doc("LoRA settings (lora and qlora)", factory=LoraConfig)
    quant: QuantConfig = doc("quantization settings (qlora)", factory=QuantConfig)
    data: DataConfig = doc("dataset", factory=DataConfig)
    train: TrainConfig = doc("optimization", factory=TrainConfig)
    eval: EvalConfig = doc("prompts answered while training", factory=EvalConfig)
    layout: LayoutConfig = doc("GPUs and nodes", factory=LayoutConfig)

    def __post_init__(self) -> None:
        choices = {
            "method": (self.method, METHODS),
            "stage": (self.stage, STAGES),
            "data.format": (self.data.format, FORMATS),
            "layout.deepspeed": (self.layout.deepspeed, DEEPSPEED),
            "train.dtype": (self.train.dtype, ("auto", "bf16", "fp16", "fp32")),
            "train.attention": (self.train.attention, ATTENTION_CHOICES),
            "train.compile": (self.train.compile, ("auto", True, False)),
            "quant.type": (self.quant.type, ("nf4", "fp4")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key}: {value!r} is not one of {', '.join(_yaml_word(a) for a in allowed)}",
                                  f"set {key} to one of them")
        positive = {
            "data.max_length": self.data.max_length, "train.batch_size": self.train.batch_size,
            "train.grad_accum": self.train.grad_accum, "train.save_every": self.train.save_every,
            "lora.r": self.lora.r, "layout.nnodes": self.layout.nnodes,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key}: must be at least 1, got {value}", f"set {key} >= 1")
        if self.data.num_proc is not None and self.data.num_proc < 1:
            raise ConfigError(f"data.num_proc: must be at least 1 or null, got {self.data.num_proc}",
                              "remove it to use one process per core")
        if self.train.max_steps is not None and self.train.max_steps < 1:
            raise ConfigError("train.max_steps: must be at least 1 or null", "remove it to use epochs")
        if self.quant.bits not in (4, 8):
            raise ConfigError(f"quant.bits: {self.quant.bits} is not 4 or 8", "use 4 (QLoRA) or 8")
        if not 0 <= self.layout.node_rank < self.layout.nnodes:
            raise ConfigError(f"layout.node_rank: {self.layout.node_rank} is outside 0..{self.layout.nnodes - 1}",
                              "node ranks count from 0 to nnodes-1")
        if not self.name or "/" in self.name:
            raise ConfigError(f"name: {self.name!r} is not a valid run name", "use letters, digits, - and _")


def _yaml_word(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------- loading

def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is Any:
        return True
    return isinstance(value, hint)


def _yaml11_float(text: str) -> Any:
    """YAML 1.1 reads `2e-4` (no dot) as text; everyone writes learning rates that way."""
    try:
        return float(text) if text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity") else text
    except ValueError:
        return text


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {str: "text", int: "an integer", float: "a number", bool: "true/false"}.get(hint, str(hint))


def _key_lines(text: str) -> dict[str, int]:
    """Map dotted key paths to 1-based line numbers, for messages that point at the line."""
    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = f"{prefix}{key.value}"
                lines[path] = key.start_mark.line + 1
                walk(value, path + ".")

    walk(root, "")
    return lines


def _build(cls: type, data: Any, prefix: str, where: str, key_lines: dict[str, int]):
    def at(key: str) -> str:
        line = key_lines.get(key)
        return f"{where}:{line}" if line else where

    if not isinstance(data, dict):
        raise ConfigError(f"{at(prefix.rstrip('.'))}: {prefix.rstrip('.') or 'the config'} must be a mapping",
                          "see presets/ for the layout")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else f"known keys: {', '.join(known)}"
            raise ConfigError(f"{at(path)}: unknown key {path}", hint)
        hint_t = hints[key]
        if is_dataclass(hint_t):
            kwargs[key] = _build(hint_t, value if value is not None else {}, path + ".", where, key_lines)
            continue
        if hint_t is float and isinstance(value, str):
            value = _yaml11_float(value)
        if not _type_ok(value, hint_t):
            raise ConfigError(f"{at(path)}: {path} must be {_type_name(hint_t)}, got {value!r}",
                              f"fix {path} in the config")
        kwargs[key] = float(value) if hint_t is float else value
    try:
        return cls(**kwargs)
    except ConfigError as e:
        key = e.msg.split(":", 1)[0]
        raise ConfigError(f"{at(key)}: {e.msg}", e.hint) from None


def config_from_dict(data: dict, where: str = "config") -> Config:
    return _build(Config, data, "", where, {})


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; raises ConfigError naming file, line and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file", "check the path, or `tunewiz presets copy NAME DEST`")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})", "check the file's permissions and encoding") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})",
                          "fix the YAML syntax") from None
    return _build(Config, data if data is not None else {}, "", str(path), _key_lines(text))


def to_dict(cfg: Config) -> dict:
    return asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def field_docs(cls: type = Config, prefix: str = "") -> dict[str, str]:
    """Dotted key -> documentation, for the wizard and `--help` texts."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        out[prefix + f.name] = f.metadata.get("doc", "")
        if is_dataclass(hints[f.name]):
            out.update(field_docs(hints[f.name], prefix + f.name + "."))
    return out


def default_lr(method: str) -> float:
    """XTuner's tutorial defaults: 2e-4 for (Q)LoRA, 2e-5 for full fine-tuning."""
    return 2.0e-5 if method == "full" else 2.0e-4
