"""How each XTuner setting becomes a tunewiz one (the rules behind xtuner_config). Torch-free.

The :class:`Mapper` takes every setting from where XTuner itself reads it
(``optim_wrapper.optimizer.lr``, else the ``lr`` of the Settings block), records which
top-level assignments it read, and lists the rest. A setting is mapped when tunewiz will do
the same with it; XTuner's plumbing that tunewiz does by itself is never listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import Config, config_from_dict, default_lr, set_key, to_dict
from .errors import ConfigError
from .templates import TEMPLATES
from .xtuner_eval import Mapping, Module, Opaque, Ref, Val, plain

# XTuner's dataset map functions whose records a tunewiz format reads as they are.
MAP_FN_FORMATS = {"alpaca_map_fn": "alpaca", "openai_map_fn": "openai", "pretrain_map_fn": "pretrain"}
ADAMW_BETAS = (0.9, 0.999)  # what engine/train.py gives AdamW
DTYPE_WHY = "tunewiz picks bf16 where the GPU has it, else fp16; set train.dtype to force one"
DATA_FORMATS_WHY = ("no tunewiz format reads these records as they are; convert them to alpaca, openai, "
                    "sharegpt, conversation or text records (data.format stays auto)")

# Top-level names that are XTuner's own machinery: tunewiz does their job itself, so they
# carry no setting to move (a non-default visualizer, load_from or resume is listed below).
MACHINERY = {"tokenizer", "sampler", "env_cfg", "log_level", "log_processor", "train_dataloader",
             "optim_wrapper", "param_scheduler", "train_cfg", "custom_hooks", "default_hooks", "randomness",
             "model"}
QUIET_WHEN = {"visualizer": None, "load_from": None, "resume": False, "sequence_parallel_size": 1}
# Why a known XTuner setting left over has no tunewiz counterpart.
REASONS = {
    "dataloader_num_workers": "tunewiz reads its tokenized data cache in the training process",
    "use_varlen_attn": "tunewiz keeps packed samples apart wherever the attention allows (train.attention: auto)",
    "sequence_parallel_size": "tunewiz has no sequence parallelism",
    "visualizer": "tunewiz writes the metrics to the run's events.jsonl; `tunewiz attach` plots them",
    "load_from": "to start from other weights, point model.path at a Hugging Face folder of them",
    "resume": "resume a run with `tunewiz train RUN --resume`",
    "optim_type": "tunewiz trains with AdamW",
    "betas": f"tunewiz's AdamW uses betas {ADAMW_BETAS}",
    "SYSTEM": "XTuner's built-in text is not known here; write it into data.system",
    "prompt_template": "tunewiz has no template of that name; data.template: auto uses the tokenizer's own",
}


@dataclass
class Unmapped:
    line: int
    name: str
    source: str
    why: str

    def line_text(self, where: str) -> str:
        return f"{where}:{self.line}: {self.name} = {self.source} not mapped ({self.why})"


class Mapper:
    def __init__(self, module: Module, where: str):
        self.m, self.where = module, where
        self.used: set[tuple[str, int]] = set()  # top-level assignments read: (name, line)
        self.values: dict[str, Any] = {}       # tunewiz dotted key -> value
        self.origin: dict[str, tuple[str, Val]] = {}  # tunewiz dotted key -> (XTuner name, value)
        self.unmapped: list[Unmapped] = []
        self.notes: list[str] = []

    # ------------------------------------------------------------------ reading
    def get(self, *paths: str) -> Val | None:
        """The first of the dotted paths that exists: a top-level name, then keys inside it."""
        for p in paths:
            first, *rest = p.split(".")
            val = top = self.m.names.get(first)
            for key in rest:
                if val is None or not isinstance(val.value, Mapping):
                    val = None
                    break
                val = val.value.items.get(key)
            if val is not None:
                if rest:
                    self.used.add((first, top.line))
                return val
        return None

    def use(self, val: Val | None) -> Any:
        """The plain value; every setting it was built from counts as read."""
        if val is None:
            return None
        self.mark(val)
        return plain(val)

    def mark(self, val: Val) -> None:
        self.used.update(val.settings())
        inner = val.value.items.values() if isinstance(val.value, Mapping) else \
            val.value if isinstance(val.value, (list, tuple)) else ()
        for v in inner:
            self.mark(v)

    def skip(self, name: str, val: Val, why: str) -> None:
        self.used.update(val.settings())
        shown = val.via or name
        if not any(u.name == shown and u.line == val.line for u in self.unmapped):
            self.unmapped.append(Unmapped(val.line, shown, val.source, why))

    def put(self, key: str, val: Val | None, convert: Callable[[Any], Any] = lambda v: v,
            name: str = "") -> None:
        """Set tunewiz key from val, when val is a value known without running the file."""
        if val is None:
            return
        value = plain(val)
        if _unknown(value):
            self.skip(name or key, val, "not a value that can be read without running the file")
            return
        self.mark(val)
        self.values[key] = convert(value)
        self.origin[key] = (val.via or name or key, val)

    # ------------------------------------------------------------------ the whole file
    def convert(self, name: str) -> tuple[dict, list[Unmapped], list[str]]:
        """The whole tunewiz config, what was left unmapped (in line order) and notes."""
        model = self.get("model")
        if not (model is not None and isinstance(model.value, Mapping)) and self.get(
                "pretrained_model_name_or_path") is None:
            raise ConfigError(f"{self.where}:1: not an XTuner config (no `model = dict(...)` and no "
                              f"pretrained_model_name_or_path)",
                              "give a config written by `xtuner copy-cfg` (or one of that shape)")
        self.model()
        self.data()
        self.optimization()
        self.saving_and_eval()
        self.leftovers()
        config = self.assemble(name)
        self.unmapped.sort(key=lambda u: u.line)
        return config, self.unmapped, self.notes

    def model(self) -> None:
        path = self.get("model.llm.pretrained_model_name_or_path", "pretrained_model_name_or_path")
        self.put("model.path", path, str)
        if path is not None and isinstance(plain(path), str) and not Path(plain(path)).expanduser().exists():
            self.notes.append(f"model.path {plain(path)!r} is not a folder here: tunewiz trains from a "
                              "local Hugging Face folder; download the model and point model.path at it")
        self.put("model.trust_remote_code", self.get("model.llm.trust_remote_code"), bool)
        if self.values.get("model.trust_remote_code"):
            self.notes.append("model.trust_remote_code: true, as in the XTuner config: training runs the "
                              "model folder's own Python code")
        kind = self.get("model.type")
        if kind is not None and isinstance(kind.value, Ref) and kind.value.last != "SupervisedFinetune":
            self.skip("model.type", kind, "tunewiz fine-tunes text models (XTuner's SupervisedFinetune)")
        dtype = self.get("model.llm.torch_dtype")
        if dtype is not None:
            self.skip("model.llm.torch_dtype", dtype, DTYPE_WHY)
        varlen = self.get("model.use_varlen_attn", "use_varlen_attn")
        if varlen is not None and plain(varlen) is True:
            self.put("train.attention", varlen, lambda v: "varlen")
        sp = self.get("sequence_parallel_size")
        if sp is not None and plain(sp) == 1:
            self.use(sp)

        lora, quant = self.get("model.lora"), self.get("model.llm.quantization_config")
        has_lora = lora is not None and isinstance(lora.value, Mapping)
        bits = self.quantization(quant) if quant is not None and isinstance(quant.value, Mapping) else None
        method = "full" if not has_lora else "qlora" if bits else "lora"
        self.values["method"] = method
        if bits and not has_lora:
            self.skip("model.llm.quantization_config", quant,
                      "full fine-tuning trains unquantized weights; a quantized base needs lora (method: qlora)")
        if has_lora:
            self.lora(lora.value)

    def quantization(self, quant: Val) -> int | None:
        items = quant.value.items
        bits = 4 if plain(items.get("load_in_4bit")) else 8 if plain(items.get("load_in_8bit")) else None
        if bits is None:
            return None
        self.values["quant.bits"] = bits
        self.origin["quant.bits"] = ("load_in_4bit", items.get("load_in_4bit") or items["load_in_8bit"])
        self.put("quant.type", items.get("bnb_4bit_quant_type"), str, "bnb_4bit_quant_type")
        self.put("quant.double_quant", items.get("bnb_4bit_use_double_quant"), bool, "bnb_4bit_use_double_quant")
        # bitsandbytes' own defaults for the 8-bit outlier handling; tunewiz keeps them
        defaults = {"llm_int8_threshold": 6.0, "llm_int8_has_fp16_weight": False}
        for key, val in items.items():
            if key in ("type", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                       "bnb_4bit_compute_dtype"):  # the compute dtype is train.dtype's, as torch_dtype
                self.use(val)
            elif key in defaults and plain(val) == defaults[key]:
                self.use(val)
            else:
                self.skip(f"quantization_config.{key}", val, "tunewiz sets only bits, type and double_quant")
        return bits

    def lora(self, lora: Mapping) -> None:
        items = lora.items
        self.put("lora.r", items.get("r"), name="r")
        self.put("lora.alpha", items.get("lora_alpha"), name="lora_alpha")
        self.put("lora.dropout", items.get("lora_dropout"), name="lora_dropout")
        target = items.get("target_modules")
        if target is not None:
            self.put("lora.target", target, lambda v: "all-linear" if v is None else v, "target_modules")
        for key, val in items.items():
            if key in ("type", "r", "lora_alpha", "lora_dropout", "target_modules", "task_type"):
                self.use(val)
            elif key == "bias" and plain(val) == "none":
                self.use(val)
            else:
                self.skip(f"lora.{key}", val, "tunewiz sets only r, alpha, dropout and target")

    # ------------------------------------------------------------------ data
    def datasets(self) -> list[Val]:
        ds = self.get("train_dataloader.dataset")
        if ds is None:
            ds = next((v for v in self.m.names.values()
                       if isinstance(v.value, Mapping) and v.value.type_name() == "process_hf_dataset"), None)
        if ds is None:
            return []
        self.used.update(ds.settings())
        if isinstance(ds.value, Mapping) and ds.value.type_name() == "ConcatDataset":
            parts = ds.value.items.get("datasets")
            return list(parts.value) if parts is not None and isinstance(parts.value, list) else []
        return [ds]

    def data(self) -> None:
        files: list[str] = []
        formats: list[tuple[str, Val]] = []
        found = self.datasets()
        for ds in found:
            if not isinstance(ds.value, Mapping):
                self.skip("train_dataloader.dataset", ds, "not a dataset dict that can be read without running it")
                continue
            self.used.update(ds.settings())
            items = ds.value.items
            files += self.data_files(items.get("dataset"))
            fmt = self.data_format(items.get("dataset_map_fn"), items.get("template_map_fn"))
            if fmt:
                formats.append(fmt)
            template = items.get("template_map_fn")
            if template is not None and isinstance(template.value, Mapping):
                self.template(template.value.items.get("template"))
                self.use(template)
            if "data.max_length" not in self.values:
                self.put("data.max_length", items.get("max_length"), name="max_length")
                self.put("data.pack", items.get("pack_to_max_length"), bool, "pack_to_max_length")
            for key, val in items.items():
                if key not in ("type", "dataset", "dataset_map_fn", "template_map_fn", "max_length",
                               "pack_to_max_length", "tokenizer", "remove_unused_columns", "shuffle_before_pack",
                               "use_varlen_attn", "map_num_proc"):
                    self.skip(f"dataset.{key}", val, "tunewiz has no such data setting")
        if not found:
            self.put("data.max_length", self.get("max_length"))
            self.put("data.pack", self.get("pack_to_max_length"), bool)
        self.template(self.get("prompt_template"))
        if files:
            self.values["data.files"] = files
        kinds = {f for f, _ in formats}
        if len(kinds) == 1:
            fmt = kinds.pop()
            self.values["data.format"] = fmt
            self.values["stage"] = "pretrain" if fmt == "pretrain" else "sft"
        elif len(kinds) > 1:
            for fmt, val in formats[1:]:
                self.skip("dataset_map_fn", val,
                          "the datasets differ in format; tunewiz detects each (data.format: auto)")

    def data_files(self, loader: Val | None) -> list[str]:
        """The files (or hub id, or folder) of ``load_dataset(path, data_files=...)``."""
        if loader is None:
            return []
        if not isinstance(loader.value, Mapping):
            self.skip("dataset", loader, "not a load_dataset(...) that can be read without running it")
            return []
        self.used.update(loader.settings())
        items = dict(loader.value.items)
        if "path" not in items and loader.value.args:  # load_dataset('json', data_files=...)
            items["path"] = loader.value.args[0]
        for key, val in items.items():
            if key not in ("type", "path", "data_files", "dataset_path", "data_dir", "split"):
                self.skip(f"load_dataset.{key}", val, "tunewiz reads the whole data source")
        builder = plain(items.get("path")) in ("json", "csv", "parquet", "text", "arrow")
        # a builder name ('json') reads data_files; any other path is the source itself
        source = next((items[k] for k in (("data_files", "data_dir") if builder else
                                          ("data_files", "path", "dataset_path", "data_dir")) if k in items), None)
        for key in ("type", "path", "split", "dataset_path", "data_dir"):
            self.use(items.get(key))
        value = self.use(source)
        if isinstance(value, dict):  # data_files=dict(train=...): the training split's files
            value = value["train"] if "train" in value else [f for v in value.values()
                                                              for f in (v if isinstance(v, list) else [v])]
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        if source is not None:
            self.skip("data_files", source, "not a file name or list of file names")
        return []

    def data_format(self, map_fn: Val | None, template_fn: Val | None) -> tuple[str, Val] | None:
        no_template = template_fn is None or plain(template_fn) is None
        if map_fn is None or plain(map_fn) is None:
            self.use(map_fn)
            # no map function: the records are XTuner's own conversation format already
            # (plain text when there is no template either)
            return ("pretrain" if no_template else "conversation", map_fn or template_fn) \
                if (map_fn or template_fn) is not None else None
        fn = plain(map_fn)
        if isinstance(fn, Ref) and fn.last in MAP_FN_FORMATS:
            self.use(map_fn)
            return MAP_FN_FORMATS[fn.last], map_fn
        if isinstance(fn, Ref) and fn.dotted in self.m.defs and no_template:
            # a function of this file with no chat template after it makes plain text: pretraining
            self.use(map_fn)
            return "pretrain", map_fn
        self.skip("dataset_map_fn", map_fn, DATA_FORMATS_WHY)
        return None

    def template(self, val: Val | None) -> None:
        if val is None:
            return
        t = plain(val)
        if "data.template" in self.values or t is None:
            self.use(val)
        elif isinstance(t, Ref) and t.last in TEMPLATES:
            self.use(val)
            self.values["data.template"] = t.last
            self.origin["data.template"] = (val.via or "prompt_template", val)
        else:
            self.skip("prompt_template", val, REASONS["prompt_template"])

    # ------------------------------------------------------------------ optimization
    def optimization(self) -> None:
        self.put("train.batch_size", self.get("train_dataloader.batch_size", "batch_size"), name="batch_size")
        self.put("train.grad_accum", self.get("optim_wrapper.accumulative_counts", "accumulative_counts"),
                 name="accumulative_counts")
        self.put("train.epochs", self.get("train_cfg.max_epochs", "max_epochs"), name="max_epochs")
        self.put("train.max_steps", self.get("train_cfg.max_iters", "max_iters"), name="max_iters")
        kind = self.get("optim_wrapper.optimizer.type", "optim_type")
        if kind is not None:
            if isinstance(plain(kind), Ref) and plain(kind).last == "AdamW":
                self.use(kind)
            else:
                self.skip("optim_type", kind, REASONS["optim_type"])
        self.put("train.lr", self.get("optim_wrapper.optimizer.lr", "lr"), name="lr")
        self.put("train.weight_decay", self.get("optim_wrapper.optimizer.weight_decay", "weight_decay"),
                 name="weight_decay")
        betas = self.get("optim_wrapper.optimizer.betas", "betas")
        if betas is not None:
            value = plain(betas)
            if isinstance(value, (list, tuple)) and tuple(value) == ADAMW_BETAS:
                self.use(betas)
            else:
                self.skip("betas", betas, REASONS["betas"])
        optimizer = self.get("optim_wrapper.optimizer")
        if optimizer is not None and isinstance(optimizer.value, Mapping):
            for key, val in optimizer.value.items.items():
                if key not in ("type", "lr", "betas", "weight_decay"):
                    self.skip(f"optimizer.{key}", val, "tunewiz's AdamW takes only lr and weight_decay")
        clip = self.get("optim_wrapper.clip_grad")
        if clip is not None and plain(clip) is None:
            self.skip("clip_grad", clip, "tunewiz always clips gradients (train.max_grad_norm)")
        self.put("train.max_grad_norm", self.get("optim_wrapper.clip_grad.max_norm", "max_norm"), name="max_norm")
        self.put("train.warmup_ratio", self.get("warmup_ratio"), name="warmup_ratio")
        self.schedule()
        seed = self.get("randomness.seed")
        if seed is not None and isinstance(plain(seed), int):
            self.put("train.seed", seed, name="seed")

    def schedule(self) -> None:
        sched = self.get("param_scheduler")
        if sched is None:
            return
        steps = sched.value if isinstance(sched.value, list) else [sched]
        kinds = [s.value.type_name() if isinstance(s.value, Mapping) else "" for s in steps]
        if kinds not in (["LinearLR", "CosineAnnealingLR"], ["CosineAnnealingLR"]):
            self.skip("param_scheduler", sched, "tunewiz warms up linearly, then decays by cosine to 0")
            return
        cosine = steps[-1].value.items
        eta_min = plain(cosine.get("eta_min"))
        if eta_min not in (None, 0, 0.0):
            self.skip("eta_min", cosine["eta_min"], "tunewiz's cosine decays to 0")
        if "train.warmup_ratio" not in self.values and len(steps) == 2:
            # the warmup's end is warmup_ratio * max_epochs, written out as a number
            end, epochs = plain(steps[0].value.items.get("end")), self.values.get("train.epochs")
            if isinstance(end, (int, float)) and isinstance(epochs, (int, float)) and epochs > 0:
                self.values["train.warmup_ratio"] = end / epochs
                self.origin["train.warmup_ratio"] = ("param_scheduler.end", steps[0].value.items["end"])

    # ------------------------------------------------------------------ saving and eval
    def saving_and_eval(self) -> None:
        self.put("train.save_every", self.get("default_hooks.checkpoint.interval", "save_steps"), name="save_steps")
        self.put("train.save_total_limit", self.get("default_hooks.checkpoint.max_keep_ckpts", "save_total_limit"),
                 lambda v: 0 if isinstance(v, int) and v < 0 else v, "save_total_limit")  # XTuner's -1 keeps all
        hook = self.eval_hook()
        items = hook.value.items if hook is not None else {}
        self.put("eval.every", items.get("every_n_iters") or self.get("evaluation_freq"), name="evaluation_freq")
        self.put("eval.inputs", items.get("evaluation_inputs") or self.get("evaluation_inputs"),
                 lambda v: [str(x) for x in v] if isinstance(v, (list, tuple)) else v, "evaluation_inputs")
        self.put("eval.max_new_tokens", items.get("max_new_tokens"), name="max_new_tokens")
        system = items.get("system") or self.get("SYSTEM")
        if system is not None:
            if isinstance(plain(system), str):
                self.put("data.system", system, name="SYSTEM")
            else:
                self.skip("SYSTEM", system, REASONS["SYSTEM"])
        if items.get("prompt_template") is not None:
            self.template(items["prompt_template"])

    def eval_hook(self) -> Val | None:
        hooks = self.get("custom_hooks")
        if hooks is None or not isinstance(hooks.value, list):
            return None
        return next((h for h in hooks.value
                     if isinstance(h.value, Mapping) and h.value.type_name() == "EvaluateChatHook"), None)

    # ------------------------------------------------------------------ the rest
    def leftovers(self) -> None:
        for name, val in self.m.names.items():
            if (name, val.line) in self.used or name in MACHINERY:
                continue
            if name in QUIET_WHEN and plain(val) == QUIET_WHEN[name]:
                continue
            if isinstance(val.value, Mapping) and val.value.type_name() == "process_hf_dataset":
                continue  # a dataset defined but not trained on: XTuner ignores it too
            why = "not a value that can be read without running the file" if _unknown(plain(val)) and \
                not isinstance(val.value, Mapping) else REASONS.get(name, "tunewiz has no such setting")
            self.skip(name, val, why)

    def assemble(self, name: str) -> dict:
        method = self.values.get("method", "lora")
        config = to_dict(Config(method=method, name=name))
        config["train"]["lr"] = default_lr(method)  # unless the file gives one
        for key, value in self.values.items():
            set_key(config, key, value)
        try:
            config_from_dict(config, self.where)
        except ConfigError as e:
            raise self.place(e) from None
        return config

    def place(self, e: ConfigError) -> ConfigError:
        """A value tunewiz refuses, told at the line of the XTuner file it came from."""
        named = [k for k in self.origin if k in e.msg]
        if not named:
            return e
        name, val = self.origin[max(named, key=len)]
        reason = e.msg.split(": ", 1)[-1] if e.msg.startswith(self.where) else e.msg
        return ConfigError(f"{self.where}:{val.line}: {name} = {val.source} cannot be used: {reason}",
                           f"fix it in {self.where}")


def _unknown(value: Any) -> bool:
    """True when a value holds something only running the file would tell."""
    if isinstance(value, (Opaque, Ref, Mapping)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_unknown(v) for v in value)
    if isinstance(value, dict):
        return any(_unknown(v) for v in value.values())
    return False
