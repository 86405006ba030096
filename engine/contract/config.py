"""The config schema: the one contract for what a run is. Torch-free.

A config is YAML data (safe-loaded, never executed). Every field below is documented in
its ``doc`` metadata; ``load_config`` rejects unknown keys, wrong types and values out of
range, naming the key, its ``file:line`` and the fix. ``to_dict`` / ``dump_yaml`` write it
back exactly.

Paths in a config (``output_dir``, ``model.path``, ``data.files``, ``data.cache_dir``) mean
what they mean to the shell the user runs ``tunewiz`` from: relative to the current
directory, with ``~`` expanded. A run's own ``config.yaml`` holds them absolute
(:func:`absolute_paths`), so ``--resume``, ``attach`` and ``convert`` read the same files from
any directory. Hub ids (datasets, models) and ``demo`` are names, not paths, and stay as written.

A config file is untrusted text: loading it stays cheap whatever it holds (aliases that
expand past ``MAX_NODES`` values, nesting past ``MAX_DEPTH``, files over ``MAX_BYTES`` are
refused) and any value echoed in a message is cut to ``SHOWN_CHARS``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import reprlib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError

# Every choice is a Literal type: the field's annotation is the one list of what it admits
# (the loader checks it), and these tuples are read from the types, never written twice.
Method = Literal["full", "lora", "qlora"]
Stage = Literal["sft", "pretrain"]
# The attention paths train.attention may name (engine/attention.py implements them).
Attention = Literal["auto", "sdpa", "eager", "flex_attention", "varlen"]
# What data.format may say; the readers of each format are contract/formats.py.
DataFormat = Literal["auto", "pretrain", "conversation", "alpaca", "openai", "sharegpt"]
DeepSpeed = Literal["none", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload"]
Dtype = Literal["auto", "bf16", "fp16", "fp32"]
# Where a model loads to answer or merge (tunewiz chat, merge); not a config field.
Device = Literal["auto", "cpu", "cuda"]
# The bit widths a frozen base may load in (quant.bits, chat --bits).
QuantBits = Literal[4, 8]
QuantType = Literal["nf4", "fp4"]
# The trackers train.report_to may name (engine/trackers.py writes to them).
Tracker = Literal["tensorboard", "wandb"]
TRACKERS = typing.get_args(Tracker)
METHODS = typing.get_args(Method)
# The methods that train an adapter on a frozen base (convert writes adapter/, merge folds it in).
ADAPTER_METHODS: tuple[Method, ...] = ("lora", "qlora")
STAGES = typing.get_args(Stage)
ATTENTION_CHOICES = typing.get_args(Attention)
FORMATS = typing.get_args(DataFormat)
DEEPSPEED = typing.get_args(DeepSpeed)

# A run directory is <output_dir>/<name>-YYYYmmdd-HHMMSS[-N][-nodeK]: one folder name, at
# most 255 bytes on common filesystems, so the name leaves room for that suffix.
NAME_MAX_BYTES = 255 - 32
NAME_CHARS = "letters, digits, -, _ and ."
MAX_BYTES = 4 << 20      # a config file; real ones are a few KiB
MAX_NODES = 100_000      # YAML values after expanding aliases
MAX_DEPTH = 64           # nesting of lists and mappings, aliases included
SHOWN_CHARS = 80         # longest value echoed in a message


def doc(text: str, default: Any = MISSING, factory: Any = MISSING):
    """A dataclass field with its documentation attached (shown by the wizard)."""
    if factory is not MISSING:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class ModelConfig:
    path: str = doc('"demo" (bundled SmolLM2-135M-Instruct), a local Hugging Face folder, '
                    'or a hub id (owner/name)', "demo")
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
    type: QuantType = doc("nf4 or fp4", "nf4")
    double_quant: bool = doc("quantize the quantization constants too", True)


@dataclass
class DataConfig:
    files: list[str] = doc("data sources, several may be mixed: JSON/JSONL, Parquet, Arrow, CSV/TSV files, "
                           "save_to_disk folders, folders of data files, hub ids (owner/name[/config][:split])",
                           factory=list)
    format: DataFormat = doc(" | ".join(FORMATS), "auto")
    skip_invalid: bool = doc("leave out bad records (counted and named in a warning) instead of stopping; "
                             "for large sets with a few broken lines", False)
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
    auto_batch: bool = doc(
        "on CUDA GPUs (no DeepSpeed), regroup batch_size x grad_accum into the micro-batch that trains "
        "fastest in the GPU's free memory, and turn gradient_checkpointing off where it still fits: "
        "each optimizer step keeps the same sequences, so the same learning. false: exactly as written",
        True)
    dtype: Dtype = doc("auto (bf16 on capable GPUs, fp16 on older, fp32 on CPU) | bf16 | fp16 | fp32", "auto")
    attention: Attention = doc("auto | varlen | sdpa | eager | flex_attention (auto: varlen on CUDA, else sdpa)", "auto")
    compile: Union[bool, str] = doc(
        "auto | true | false: compile each transformer layer (torch.compile; the first steps include "
        "the compile, about 30 s). auto: on for one-process CUDA runs without DeepSpeed, where it was "
        "measured faster and leaner than uncompiled (docs/bench.md); off on CPUs, under DeepSpeed "
        "(its parameter hooks) and with several processes (not yet measured there)", "auto")
    float8: Union[bool, str] = doc(
        "auto | true | false: full fine-tuning's decoder matrix products in FP8 (torchao's float8 "
        "training, tensorwise scaling; the output layer stays bf16) on GPUs of compute capability 8.9+ "
        "(H100/H200, L40, RTX 4090). Needs compiled layers and torchao (the gpu extra). auto: on for "
        "full fine-tuning where train.compile compiles, torchao is installed and the GPU has FP8; "
        "LoRA and QLoRA keep bf16 (their step is not bound by the frozen base's products)", "auto")
    host_embedding: bool = doc(
        "LoRA/QLoRA on CUDA (no DeepSpeed): keep the frozen input embedding table in host memory and "
        "look tokens up there, saving vocab x hidden x 2 bytes of GPU memory (0.7 GiB on a 7B "
        "InternLM2, 1 GiB on Llama 3 8B) for a small copy per micro-step. A table shared with the "
        "output layer (tied) or trained stays on the GPU", True)
    fused_loss: bool = doc("compute the loss chunk by chunk from the last hidden states, never holding the "
                           "full logits (plain-head architectures, no DeepSpeed; others use the model's own)",
                           True)
    report_to: Union[str, list[str]] = doc(
        "trackers that also get the step metrics and eval answers: tensorboard, wandb (a list, or one "
        "name; events.jsonl is always written). TensorBoard writes to RUN/tensorboard, W&B offline to "
        "RUN/wandb unless WANDB_MODE or an API key says otherwise", factory=list)


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
    deepspeed: DeepSpeed = doc(" | ".join(DEEPSPEED), "none")
    join_timeout_s: int = doc("seconds to wait for every node to join", 300)

    @property
    def uses_deepspeed(self) -> bool:
        return self.deepspeed != "none"

    @property
    def zero_stage(self) -> int:
        """The ZeRO stage layout.deepspeed names (0 without DeepSpeed): 1 shards the optimizer
        states over the ranks, 2 the gradients too, 3 the parameters too."""
        return 0 if self.deepspeed == "none" else int(self.deepspeed[len("zero")])

    @property
    def offloads(self) -> bool:
        """Optimizer states (and at stage 3 the parameters) kept in host memory."""
        return self.deepspeed.endswith("_offload")

    @property
    def zero3(self) -> bool:
        """Parameters sharded across ranks: they must exist partitioned before the weights load."""
        return self.zero_stage == 3


@dataclass
class Config:
    name: str = doc("run name; the run directory is <output_dir>/<name>-<timestamp>", "run")
    output_dir: str = doc("folder that holds the runs", "work_dirs")
    model: ModelConfig = doc("base model", factory=ModelConfig)
    method: Method = doc(" | ".join(METHODS), "lora")
    stage: Stage = doc("sft (loss on answers) | pretrain (loss on every token)", "sft")
    lora: LoraConfig = doc("LoRA settings (lora and qlora)", factory=LoraConfig)
    quant: QuantConfig = doc("quantization settings (qlora)", factory=QuantConfig)
    data: DataConfig = doc("dataset", factory=DataConfig)
    train: TrainConfig = doc("optimization", factory=TrainConfig)
    eval: EvalConfig = doc("prompts answered while training", factory=EvalConfig)
    layout: LayoutConfig = doc("GPUs and nodes", factory=LayoutConfig)

    @property
    def uses_adapter(self) -> bool:
        """LoRA or QLoRA: a frozen base with a trained adapter (converted to adapter/, merged)."""
        return self.method in ADAPTER_METHODS

    @property
    def quantized(self) -> bool:
        """QLoRA: the frozen base loads 4/8-bit (bitsandbytes, CUDA only)."""
        return self.method == "qlora"

    def __post_init__(self) -> None:
        choices = dict(_literal_fields(self))
        choices["train.compile"] = (self.train.compile, ("auto", True, False))
        choices["train.float8"] = (self.train.float8, ("auto", True, False))
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key}: {shown(value)} is not one of {', '.join(_yaml_word(a) for a in allowed)}",
                                  f"set {key} to one of them")
        positive = {
            "data.max_length": self.data.max_length, "train.batch_size": self.train.batch_size,
            "train.grad_accum": self.train.grad_accum, "train.save_every": self.train.save_every,
            "lora.r": self.lora.r, "layout.nnodes": self.layout.nnodes,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key}: must be at least 1, got {shown(value)}", f"set {key} >= 1")
        if self.data.num_proc is not None and self.data.num_proc < 1:
            raise ConfigError(f"data.num_proc: must be at least 1 or null, got {shown(self.data.num_proc)}",
                              "remove it to use one process per core")
        if self.train.max_steps is not None and self.train.max_steps < 1:
            raise ConfigError("train.max_steps: must be at least 1 or null", "remove it to use epochs")
        if self.quant.bits not in typing.get_args(QuantBits):
            raise ConfigError(f"quant.bits: {shown(self.quant.bits)} is not 4 or 8", "use 4 (QLoRA) or 8")
        check_node_rank(self.layout.node_rank, self.layout.nnodes)
        self.train.report_to = tracker_names(self.train.report_to)
        check_name(self.name)
        self._check_ranges()
        self._expand_home()

    def _check_ranges(self) -> None:
        """Every value a field's type admits but training cannot use (or would use silently
        wrong: a negative clipping norm trains uphill, epochs 0 is a one-step "run")."""
        t, lo, d, e, lay = self.train, self.lora, self.data, self.eval, self.layout
        for key, value in {"train.epochs": t.epochs, "train.lr": t.lr, "train.warmup_ratio": t.warmup_ratio,
                           "train.weight_decay": t.weight_decay, "train.max_grad_norm": t.max_grad_norm,
                           "lora.dropout": lo.dropout}.items():
            if not math.isfinite(value):
                raise ConfigError(f"{key}: must be a finite number, got {value}", f"set {key} to a number")
        ranges = [
            ("train.epochs", t.epochs > 0, f"must be above 0, got {t.epochs:g}", "e.g. 3, or set train.max_steps"),
            ("train.lr", t.lr > 0, f"must be above 0, got {t.lr:g}", f"e.g. {default_lr(self.method):g}"),
            ("train.warmup_ratio", 0 <= t.warmup_ratio <= 1, f"must be within 0..1, got {t.warmup_ratio:g}",
             "a fraction of the steps, e.g. 0.03"),
            ("train.weight_decay", t.weight_decay >= 0, f"must be 0 or more, got {t.weight_decay:g}", "e.g. 0 or 0.01"),
            ("train.max_grad_norm", t.max_grad_norm > 0, f"must be above 0, got {t.max_grad_norm:g}",
             "e.g. 1.0 (a large value clips nothing)"),
            ("train.seed", 0 <= t.seed < 2 ** 32, f"must be within 0..{2 ** 32 - 1}, got {shown(t.seed)}",
             "e.g. 0"),
            ("train.save_total_limit", t.save_total_limit >= 0, f"must be 0 or more, got {shown(t.save_total_limit)}",
             "the newest checkpoints kept; 0 keeps all"),
            ("lora.dropout", 0 <= lo.dropout < 1, f"must be within 0..1 (1 excluded), got {lo.dropout:g}",
             "e.g. 0.1, or 0 for none"),
            ("lora.alpha", lo.alpha >= 1, f"must be at least 1, got {shown(lo.alpha)}", "e.g. 16 (scale = alpha / r)"),
            ("lora.target", bool(lo.target) and all(lo.target) if isinstance(lo.target, list) else bool(lo.target),
             "names no module", "all-linear, or a list of module names such as [q_proj, v_proj]"),
            ("data.files", all(d.files), "has an empty entry", "remove it, or give a file, folder or hub id"),
            ("data.template", d.template in _template_names(), f"{shown(d.template)} is not a template",
             f"use one of: {', '.join(_template_names())}"),
            ("eval.every", e.every >= 0, f"must be 0 or more, got {shown(e.every)}", "0 answers only before and after"),
            ("eval.max_new_tokens", e.max_new_tokens >= 1, f"must be at least 1, got {shown(e.max_new_tokens)}", "e.g. 64"),
            ("layout.gpus", _gpus_ok(lay.gpus), f"{shown(lay.gpus)} is not all, a count or a list of GPU ids",
             "e.g. all, 2 or [0, 1]"),
            ("layout.master_addr", bool(lay.master_addr) and not any(c.isspace() for c in lay.master_addr),
             f"{shown(lay.master_addr)} is not a host address", "e.g. 127.0.0.1 or node 0's host name"),
            ("layout.master_port", 1 <= lay.master_port <= 65535, f"must be within 1..65535, got {shown(lay.master_port)}",
             "e.g. 29500"),
            ("layout.join_timeout_s", lay.join_timeout_s >= 1, f"must be at least 1, got {shown(lay.join_timeout_s)}", "e.g. 300"),
            ("model.path", bool(self.model.path), "is empty", 'give a local Hugging Face model folder, or "demo"'),
            ("output_dir", bool(self.output_dir), "is empty", "give the folder that holds the runs, e.g. work_dirs"),
        ]
        for key, ok, msg, hint in ranges:
            if not ok:
                raise ConfigError(f"{key}: {msg}", hint)
        for key, value in (("output_dir", self.output_dir), ("data.cache_dir", d.cache_dir)):
            blocker = _file_in_the_way(os.path.expanduser(value)) if value else None
            if blocker:
                raise ConfigError(f"{key}: {shown(blocker)} is a file, not a folder",
                                  f"point {key} at a folder (it is created if missing)")

    def _expand_home(self) -> None:
        """`~/runs` means the home folder, as in the shell (never a folder named `~`)."""
        self.output_dir = os.path.expanduser(self.output_dir)
        self.data.cache_dir = os.path.expanduser(self.data.cache_dir)
        if self.model.path != "demo":
            self.model.path = os.path.expanduser(self.model.path)
        self.data.files = [os.path.expanduser(f) for f in self.data.files]


def check_name(name: str) -> None:
    """A run name becomes a folder name and a Slurm job name: a word of NAME_CHARS."""
    hint = f"use {NAME_CHARS}, at most {NAME_MAX_BYTES} bytes"
    if not name or name.startswith(".") or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"name: {shown(name)} is not a valid run name", hint)
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        raise ConfigError(f"name: {shown(name)} is longer than {NAME_MAX_BYTES} bytes", hint)


def get_key(config: Any, key: str) -> Any:
    """The value at a dotted key ("train.lr", "name") of a Config, or of its dict form."""
    node, last = _parent_of(config, key)
    if not _has(node, last):
        raise ConfigError(f"{key}: no such config key", _key_hint(config, key))
    return node[last] if isinstance(node, dict) else getattr(node, last)


def set_key(config: Any, key: str, value: Any) -> None:
    """Set a dotted key of a Config, or of its dict form. A Config takes only its own keys;
    a dict takes new leaves too (config_from_dict checks those, at their line)."""
    node, last = _parent_of(config, key)
    if isinstance(node, dict):
        node[last] = value
    elif _has(node, last):
        setattr(node, last, value)
    else:
        raise ConfigError(f"{key}: no such config key", _key_hint(config, key))


def _parent_of(config: Any, key: str) -> tuple[Any, str]:
    *parents, last = key.split(".")
    node = config
    for i, name in enumerate(parents):
        if not _has(node, name):
            raise ConfigError(f"{'.'.join(parents[:i + 1])}: no such config section", _key_hint(config, key))
        node = node[name] if isinstance(node, dict) else getattr(node, name)
    return node, last


def _has(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return name in node
    return is_dataclass(node) and name in {f.name for f in fields(node)}


def _key_hint(config: Any, key: str) -> str:
    known = list(field_docs())
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]}?" if close else "write it as section.key, e.g. train.lr"


def check_node_rank(node_rank: Any, nnodes: int, key: str = "layout.node_rank",
                    fix: str = "node ranks count from 0 to nnodes-1") -> None:
    """A node's rank is one of 0..nnodes-1: in a config, from --node-rank or NODE_RANK, in the wizard.
    key and fix name where the rank came from and how to change it there."""
    if not 0 <= node_rank < nnodes:
        raise ConfigError(f"{key}: {shown(node_rank)} is outside 0..{shown(nnodes - 1)}", fix)


def tracker_names(report_to: Any) -> list[str]:
    """train.report_to as a list of known tracker names: one name stands for a list of one,
    "none" (the transformers spelling) for none; a repeated name counts once."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n for n in names if n != "none"]
    for name in names:
        if name not in TRACKERS:
            close = difflib.get_close_matches(str(name), TRACKERS, n=1)
            raise ConfigError(f"train.report_to: {shown(name)} is not a tracker",
                              (f"did you mean {close[0]}? " if close else "")
                              + f"use a list of: {', '.join(TRACKERS)}")
    return list(dict.fromkeys(names))


def _gpus_ok(gpus: Any) -> bool:
    if isinstance(gpus, str):
        return gpus == "all"
    if isinstance(gpus, int):
        return gpus >= 1
    return bool(gpus) and all(g >= 0 for g in gpus) and len(set(gpus)) == len(gpus)


def _template_names() -> list[str]:
    from .templates import template_names

    return template_names()


def _file_in_the_way(path: str) -> str | None:
    """The path itself or the nearest existing folder above it, when that is not a folder."""
    p = Path(path)
    for candidate in (p, *p.parents):
        try:
            if candidate.exists():
                return None if candidate.is_dir() else str(candidate)
        except OSError:  # a name too long or unreadable: creating the run names it
            return None
    return None


def shown(value: Any) -> str:
    """A value as a message echoes it: its repr, cut to SHOWN_CHARS with an ellipsis."""
    if isinstance(value, str):
        text = repr(value[:SHOWN_CHARS])
        return text if len(value) <= SHOWN_CHARS and len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN_CHARS
_REPR.maxlist = _REPR.maxdict = _REPR.maxlevel = 6


def _yaml_word(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------- loading

def _literal_fields(obj: Any, prefix: str = ""):
    """(dotted key, (value, allowed)) for every Literal-typed field, sections included."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if typing.get_origin(hint) is Literal:
            yield prefix + f.name, (value, typing.get_args(hint))
        elif is_dataclass(value):
            yield from _literal_fields(value, f"{prefix}{f.name}.")


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:  # the type of its choices here; which choice, __post_init__ says
        return any(isinstance(value, type(a)) and not isinstance(value, bool) for a in typing.get_args(hint))
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
    if origin is Literal:
        return " | ".join(map(str, typing.get_args(hint)))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {str: "text", int: "an integer", float: "a number", bool: "true/false"}.get(hint, str(hint))


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing documents that are cheap to write but costly to hold: an
    alias repeats what it names, so a few hundred bytes of nested aliases describe billions
    of values (and a billion-character error message). Nesting is bounded while composing;
    the expanded size and alias cycles are checked on the composed tree before anything is
    constructed, so the cost stays proportional to the file."""

    def __init__(self, stream, where: str):
        super().__init__(stream)
        self.where = where
        self.depth = 0

    def compose_node(self, parent, index):
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise ConfigError(f"{self.where}:{mark.line + 1}: nested more than {MAX_DEPTH} levels deep",
                              "a config is a few levels of keys; flatten the value")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as e:  # an integer past Python's digit limit, a bad date
            why = "an integer too long to read" if "digits" in str(e) else _cut(str(e))
            raise ConfigError(f"{self.where}:{node.start_mark.line + 1}: cannot read this value ({why})",
                              "write a value the key takes (see presets/ for examples)") from None


def _check_expansion(root: yaml.Node, where: str) -> None:
    """Values after expanding aliases, and their nesting: at most MAX_NODES and MAX_DEPTH.
    Iterative and memoized per node, so a bomb costs its size in the file, not its expansion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            line = f"{where}:{node.start_mark.line + 1}"
            if size[key] > MAX_NODES:
                raise ConfigError(f"{line}: the aliases here expand to more than {MAX_NODES:,} values",
                                  "write the values out, or use fewer nested aliases")
            if depth[key] > MAX_DEPTH:
                raise ConfigError(f"{line}: the aliases here nest more than {MAX_DEPTH} levels deep",
                                  "use fewer nested aliases")
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(f"{where}:{node.start_mark.line + 1}: an alias names a value that contains it",
                              "an alias may only repeat a value defined before it, outside it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _parse(text: str, where: str) -> tuple[Any, dict[str, int]]:
    """The document's data and the line of every key (dotted paths, 1-based)."""
    loader = None
    try:
        loader = _BoundedLoader(text, where)  # reads the first characters already
        root = loader.get_single_node()
        if root is None:
            return None, {}
        _check_expansion(root, where)
        lines = _key_lines(root)
        return loader.construct_document(root), lines
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            line = f":{mark.line + 1}"
        elif isinstance(e, yaml.reader.ReaderError):  # a control character: only an offset
            line = f":{text.count(chr(10), 0, e.position) + 1}"
        else:
            line = ""
        why = getattr(e, "problem", None) or (f"character #x{e.character:04x} is not allowed"
                                              if isinstance(e, yaml.reader.ReaderError) else str(e))
        raise ConfigError(f"{where}{line}: not valid YAML ({_cut(' '.join(str(why).split()))})",
                          "fix the YAML syntax") from None
    finally:
        if loader is not None:
            loader.dispose()


def _key_lines(root: yaml.Node) -> dict[str, int]:
    """Map dotted key paths to 1-based line numbers, for messages that point at the line."""
    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str, level: int) -> None:
        if isinstance(node, yaml.MappingNode) and level < 8:  # the schema is three levels deep
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    path = f"{prefix}{key.value}"
                    lines.setdefault(path, key.start_mark.line + 1)
                    walk(value, path + ".", level + 1)

    walk(root, "", 0)
    return lines


def _cut(text: str) -> str:
    return text if len(text) <= 4 * SHOWN_CHARS else text[:4 * SHOWN_CHARS - 1] + "…"


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
            close = difflib.get_close_matches(str(key)[:SHOWN_CHARS], known, n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else f"known keys: {', '.join(known)}"
            plain = isinstance(key, str) and key.isprintable() and len(key) <= SHOWN_CHARS
            raise ConfigError(f"{at(path)}: unknown key {path if plain else prefix + shown(key)}", hint)
        hint_t = hints[key]
        if is_dataclass(hint_t):
            kwargs[key] = _build(hint_t, value if value is not None else {}, path + ".", where, key_lines)
            continue
        if hint_t is float and isinstance(value, str):
            value = _yaml11_float(value)
        if not _type_ok(value, hint_t):
            raise ConfigError(f"{at(path)}: {path} must be {_type_name(hint_t)}, got {shown(value)}",
                              f"fix {path} in the config")
        # Counts and ids end up in 64-bit integers (torch, numpy) and rates in floats.
        too_large = isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 63
        if too_large or (hint_t is float and isinstance(value, int) and abs(value) > 2 ** 1023):
            raise ConfigError(f"{at(path)}: {path}: {shown(value)} is out of range", f"fix {path} in the config")
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
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too large for a config",
                              f"a config is a few KiB (at most {MAX_BYTES >> 20} MiB); list data in data.files")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({_cut(str(e))})",
                          "check the file's permissions and encoding") from None
    data, key_lines = _parse(text, str(path))
    cfg = _build(Config, data if data is not None else {}, "", str(path), key_lines)
    cfg._where = {key: f"{path}:{line}" for key, line in key_lines.items()}
    cfg._file = str(path)
    return cfg


def where(cfg: Config, key: str) -> str:
    """`file:line` of a key in the file the config was loaded from (for checks made later,
    once the model is known): the file alone when the key is not in it."""
    return getattr(cfg, "_where", {}).get(key) or getattr(cfg, "_file", "config")


def absolute_paths(cfg: Config) -> Config:
    """A copy whose paths are absolute (relative ones taken from the current directory, as
    the user meant them): what a run's own config.yaml holds. Hub dataset ids (the rule
    data reading uses: no such path, and shaped owner/name[/config][:split]) and "demo" are
    names, kept as written."""
    from .sources import _looks_like_hub_id

    def absolute(p: str) -> str:
        return os.path.abspath(p) if p else p

    def hub_id(entry: str) -> bool:
        return not os.path.lexists(entry) and _looks_like_hub_id(entry)

    out = config_from_dict(to_dict(cfg))
    out.output_dir = absolute(cfg.output_dir)
    out.data.cache_dir = absolute(cfg.data.cache_dir)
    if cfg.model.path != "demo" and not is_model_hub_id(cfg.model.path):
        out.model.path = absolute(cfg.model.path)
    out.data.files = [f if hub_id(f) else absolute(f) for f in cfg.data.files]
    return out


_MODEL_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_model_hub_id(path: str) -> bool:
    """owner/name that is not a local path (nothing there, and no local folder called owner):
    a model on the Hugging Face hub, kept as written and fetched into its cache when used."""
    return (_MODEL_HUB_ID.fullmatch(path) is not None and not os.path.lexists(path)
            and not os.path.lexists(path.split("/")[0]))


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


def check_lora_target(cfg: Config, module_names: list[str], linear_names: list[str]) -> None:
    """Every entry of lora.target must name a module of the model (peft itself fails only
    when none does, with a traceback, and ignores the rest). The message lists the linear
    layers the model has, by their short names, so the fix is a copy away."""
    target = cfg.lora.target
    if target == "all-linear":
        return
    at = where(cfg, "lora.target")
    if isinstance(target, str):  # peft reads a single string as a pattern of the full name
        try:
            pattern = re.compile(target)
        except re.error as e:
            raise ConfigError(f"{at}: lora.target: {shown(target)} is not a valid pattern ({e})",
                              "all-linear, or a list of module names") from None
        missing = [] if any(pattern.fullmatch(n) for n in module_names) else [target]
    else:
        missing = [t for t in target if not any(n == t or n.endswith("." + t) for n in module_names)]
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in linear_names})
        listed = ", ".join(short[:24]) + (", ..." if len(short) > 24 else "")
        pattern_note = ("; a single text is a pattern of the full module name, a list names modules"
                        if isinstance(target, str) else "")
        raise ConfigError(f"{at}: lora.target: {', '.join(shown(m) for m in missing[:5])} "
                          f"matches no module of the model",
                          f"its linear modules: {listed or 'none'}; or use all-linear{pattern_note}")


def default_lr(method: str) -> float:
    """XTuner's tutorial defaults: 2e-4 for (Q)LoRA, 2e-5 for full fine-tuning."""
    return 2.0e-5 if method == "full" else 2.0e-4
