"""A chat session with a model: the library side of ``tunewiz chat`` and the TUI's chat.

A thin consumer of ``generate.stream_reply``. The prompt is rendered by the same Encoder
that training uses, with the template and system prompt saved beside the adapter (or the
merged model) unless the options say otherwise, so the model sees at chat time exactly
the text it was trained on. What to load and how to answer is a ChatOptions
(contract/chat_options.py). The terminal REPL is tunewiz/commands/chat.py; the TUI talks
to chat_server.py.

Raw (completion) mode gives the model the text as-is, without a template, and lets it
continue; each turn stands alone. It is how a pretrain run learned text and how its eval
answers are made, so it is the default for a model whose run has ``stage: pretrain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .contract.chat_options import ChatOptions
from .contract.errors import ModelError


@dataclass
class ChatSession:
    """A loaded model with its prompt encoder and the conversation so far."""

    model: object
    tokenizer: object
    encoder: object
    max_new_tokens: int
    temperature: float
    top_p: float
    context: int
    history: list[dict] = field(default_factory=list)
    raw: bool = False

    def reply(self, text: str):
        """Yield the answer to text, then remember the turn (only if fully consumed).
        In raw mode: the continuation of text, and nothing is remembered."""
        from .generate import stream_reply

        if self.raw:
            yield from stream_reply(self.model, self.tokenizer, self.completion_prompt(text, self.max_new_tokens),
                                    self.max_new_tokens, self.temperature, self.top_p,
                                    self.encoder.stop_token_ids, self.encoder.stop_words)
            return
        messages = self.history + [{"role": "user", "content": text}]
        prompt = self._prompt_ids(messages)
        pieces = []
        for piece in stream_reply(self.model, self.tokenizer, prompt, self.max_new_tokens, self.temperature,
                                  self.top_p, self.encoder.stop_token_ids, self.encoder.stop_words):
            pieces.append(piece)
            yield piece
        self.history = messages + [{"role": "assistant", "content": "".join(pieces)}]

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        """Drop the oldest turns while the prompt and the answer would not fit the context."""
        ids = self.encoder.prompt_ids(messages)
        while len(ids) + self.max_new_tokens > self.context and len(messages) > 2:
            messages = messages[2:]
            ids = self.encoder.prompt_ids(messages)
        return ids

    def completion_prompt(self, text: str, max_new_tokens: int) -> list[int]:
        """The raw prompt for text; when it and the answer would not fit the context, its
        end is kept, since that is what the model continues."""
        from .generate import completion_ids

        ids = completion_ids(self.tokenizer, text)
        room = self.context - max_new_tokens
        return ids[-room:] if 0 < room < len(ids) else ids

    def set_system(self, text: str) -> None:
        self.encoder.system = text
        self.history = []


def open_session(opts: ChatOptions) -> ChatSession:
    from .encode import Encoder
    from .inference_model import (adapter_kind, adapter_meta, attach_adapter, load_causal_lm,
                                  load_tokenizer_for)
    from .models import pick_dtype, resolve_model_path

    model, adapter, run_stage = chat_target(opts.model, opts.adapter)
    base = resolve_model_path(model)
    adapter = Path(adapter) if adapter else None
    if adapter is not None and adapter_kind(adapter) == "full":
        raise ModelError(f"{adapter} is a full model, not an adapter",
                         f"chat with it directly: tunewiz chat {adapter}")
    meta = adapter_meta(base, adapter)
    template = opts.template or meta.get("template") or "auto"
    system = opts.system if opts.system is not None else meta.get("system", "")
    raw = opts.raw if opts.raw is not None else (run_stage or meta.get("stage")) == "pretrain"

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the terminal is for the conversation
    device = _chat_device(opts.bits, opts.device)
    tokenizer = load_tokenizer_for(base, adapter)
    encoder = Encoder(tokenizer, template=template, system=system, stage="sft",
                      max_length=_context_length(base))
    model = load_causal_lm(base, pick_dtype("auto", device), device, bits=opts.bits)
    if adapter is not None:
        model = attach_adapter(model, adapter)
    return ChatSession(model, tokenizer, encoder, opts.max_new_tokens, opts.temperature, opts.top_p,
                       context=encoder.max_length, raw=raw)


def chat_target(model: str, adapter: str | None) -> tuple[str, str | None, str | None]:
    """(model, adapter, the run's stage) for MODEL [--adapter A]. A run directory stands for
    the model its output plan leaves (merged/ or hf/), else its adapter/ on the run's base."""
    from .contract import rundir
    from .contract.config import load_config

    run = Path(model).expanduser()
    if not rundir.is_run_dir(run):
        return model, adapter, None
    if adapter:
        raise ModelError(f"{run} is a run, which brings its own model; --adapter is for a base model",
                         f"drop --adapter, or give the base: tunewiz chat BASE --adapter {adapter}")
    cfg = load_config(run / rundir.CONFIG)
    folder = rundir.chat_model(run)
    if (folder / "config.json").is_file():
        return str(folder), None, cfg.stage
    if (run / rundir.ADAPTER / "adapter_config.json").is_file():
        return cfg.model.path, str(run / rundir.ADAPTER), cfg.stage
    raise ModelError(f"run {run.name} has no model to chat with yet (no {rundir.MERGED}/, {rundir.HF}/ "
                     f"or {rundir.ADAPTER}/)", f"convert it first: tunewiz export {run}")


def _chat_device(bits: int | None, requested: str) -> str:
    """The device to chat on. 4/8-bit loading (bitsandbytes) runs on CUDA only, so a --bits
    on a machine (or a --device) without CUDA is about --bits, not about --device."""
    from .inference_model import pick_device

    if not bits:
        return pick_device(requested)
    import torch

    if requested == "cpu" or not torch.cuda.is_available():
        where = "--device cpu" if requested == "cpu" else "this machine has no CUDA GPU"
        raise ModelError(f"--bits {bits} loads the model in {bits}-bit, which needs CUDA, and {where}",
                         "drop --bits to chat in full precision, on the CPU or on a GPU")
    return "cuda"


def _context_length(model_dir: Path) -> int:
    import json

    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return 2048
    return int(cfg.get("max_position_embeddings") or 2048)
