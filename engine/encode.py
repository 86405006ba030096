"""Tokenization with loss masks: what the model sees and which tokens it learns.

Every sample becomes a list of *pieces* (text or token ids, each trained or not) that are
tokenized separately and concatenated, the way XTuner encodes prompt and answer apart.
The text pieces of many samples go to the tokenizer in one batched call.

Rules (shared by both template kinds):
- loss only on assistant answers plus what ends them (the suffix, or EOS where the
  template asks for it); system and user text is masked; every answer of a multi-turn
  conversation is trained;
- pretraining text is BOS + text + EOS with loss on every token but BOS;
- the config's system prompt is added where a sample has none;
- sequences longer than max_length are cut there, and counted.

Named templates follow XTuner's turn construction (see templates.py). ``auto`` uses the
tokenizer's own ``chat_template``: the whole conversation is rendered once and each answer
is located by rendering the conversation up to it with the generation prompt (the text
between the two renders is the answer and its end marker). Templates that rewrite earlier
turns fall back to finding the answer text itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from .contract.errors import ConfigError, DataError
from .contract.formats import Sample
from .contract.templates import AUTO, Template, get_template

IGNORE = -100
Piece = tuple[Union[str, list[int]], bool]      # (text or token ids, trained)
Progress = Callable[[int, int], None]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]            # IGNORE (-100) where no loss is taken
    truncated: bool = False

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


class Encoder:
    def __init__(self, tokenizer, template: str = AUTO, system: str = "", stage: str = "sft",
                 max_length: int = 2048):
        if stage not in ("sft", "pretrain"):
            raise ConfigError(f"stage: {stage!r} is not sft or pretrain", "set stage to sft or pretrain")
        self.tokenizer = tokenizer
        self.template_name = template or AUTO
        self.template: Template | None = None if self.template_name == AUTO else get_template(self.template_name)
        self.system = system or ""
        self.stage = stage
        self.max_length = max_length
        self.bos_ids, self.eos_ids = _bos_eos(tokenizer)
        specials = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
                    if getattr(t, "special", False)}
        specials |= {t for t in (tokenizer.eos_token, tokenizer.bos_token) if t}
        # Longest first so that a token never matches as a prefix of a longer one.
        self._special_re = re.compile("|".join(map(re.escape, sorted(specials, key=len, reverse=True)))) \
            if specials else None

    @classmethod
    def from_config(cls, tokenizer, data_cfg, stage: str) -> "Encoder":
        """The encoder a run's data config describes (training, prepare-data, eval prompts)."""
        return cls(tokenizer, template=data_cfg.template, system=data_cfg.system, stage=stage,
                   max_length=data_cfg.max_length)

    # ------------------------------------------------------------------ public

    def describe(self) -> str:
        """The template's name, saved beside an adapter so chat renders the same way."""
        return self.template_name

    def encode(self, sample: Sample) -> Encoded:
        return self.encode_many([sample])[0]

    def encode_many(self, samples: Sequence[Sample], progress: Progress | None = None,
                    chunk: int = 1024) -> list[Encoded]:
        """Encode samples in chunks, one batched tokenizer call per chunk."""
        out: list[Encoded] = []
        total = len(samples)
        for start in range(0, total, chunk):
            batch = [self.pieces(s) for s in samples[start:start + chunk]]
            out.extend(self._tokenize(batch))
            if progress is not None:
                progress(min(start + chunk, total), total)
        return out

    def pieces(self, sample: Sample) -> list[Piece]:
        """The sample as (text or ids, trained) pieces, before tokenization."""
        if not sample.is_chat:
            return [(self.bos_ids, False), (sample.text, True), (self.eos_ids, True)]
        messages = self._with_system(sample.messages)
        if self.template is None:
            pieces = self._auto_pieces(messages, sample.source)
        else:
            pieces = self._named_pieces(messages)
        if self.stage == "pretrain":
            # Pretraining on dialogues: learn every token of the rendered text (BOS aside).
            pieces = [(p, not (isinstance(p, list) and p == self.bos_ids)) for p, _ in pieces]
        return pieces

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """Token ids of a conversation that ends with a user message, ready for generation."""
        if not messages or messages[-1].get("role") != "user":
            raise ValueError("prompt_ids needs a conversation that ends with a user message")
        messages = self._with_system(messages)
        if self.template is None:
            text = self._render(messages, True, "the prompt")
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        turns, pending_system, pending_input = _turns(messages)
        pieces, need_bos = self._turn_pieces(turns)
        if need_bos:
            pieces.append((self.bos_ids, False))
        t = self.template
        pieces.append((t.render_system(pending_system) + t.render_instruction(pending_input, len(turns) + 1), False))
        return self._tokenize([pieces], truncate=False)[0].input_ids

    @property
    def stop_words(self) -> list[str]:
        """Strings that end an answer: the template's stop words and the tokenizer's EOS."""
        words = list(self.template.stop_words) if self.template is not None else self._auto_end_markers()
        eos = self.tokenizer.eos_token
        return _unique(words + ([eos] if eos else []))

    @property
    def stop_token_ids(self) -> list[int]:
        """Ids of the stop words that are single tokens (what generate's eos_token_id takes)."""
        ids = []
        unk = self.tokenizer.unk_token_id
        for word in self.stop_words:
            tid = self.tokenizer.convert_tokens_to_ids(word)
            if isinstance(tid, int) and tid != unk:
                ids.append(tid)
        return _unique(ids)

    # ------------------------------------------------------------------ named templates

    def _named_pieces(self, messages: list[dict]) -> list[Piece]:
        turns, _, _ = _turns(messages)
        return self._turn_pieces(turns)[0]

    def _turn_pieces(self, turns: list[tuple[str, str, str]]) -> tuple[list[Piece], bool]:
        """XTuner's construction: [BOS] system+instruction, [answer+suffix], [EOS], sep."""
        t = self.template
        pieces: list[Piece] = []
        need_bos = True
        for i, (system, question, answer) in enumerate(turns):
            if need_bos:
                pieces.append((self.bos_ids, False))
            pieces.append((t.render_system(system) + t.render_instruction(question, i + 1), False))
            pieces.append((answer + t.suffix, True))
            if t.needs_eos:
                pieces.append((self.eos_ids, True))
            need_bos = t.needs_eos   # after an EOS the next turn starts a new BOS
            if t.sep:
                pieces.append((t.sep, False))
        return pieces, need_bos

    # ------------------------------------------------------------------ auto (chat_template)

    def _render(self, messages: list[dict], generation_prompt: bool, source: str) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError("template: auto, but the tokenizer has no chat_template",
                              "set data.template (or --template) to a named template, e.g. internlm2_chat")
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=generation_prompt)
        except Exception as e:  # the template's own raise_exception, or a Jinja error
            raise DataError(f"the chat template rejects this conversation ({e})",
                            "fix the roles' order, or use a named template", where=source) from None

    def _auto_pieces(self, messages: list[dict], source: str) -> list[Piece]:
        full = self._render(messages, False, source)
        pieces: list[Piece] = []
        cursor = 0
        for k, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self._render(messages[:k], True, source)
            upto = full if k + 1 == len(messages) else self._render(messages[:k + 1], False, source)
            consistent = full.startswith(upto) and upto.startswith(before) and len(before) >= cursor
            start, limit = (len(before), len(upto)) if consistent else (cursor, len(full))
            content = m["content"]
            at = _find(full, content, start, limit)
            if at is None:
                raise DataError(f"the chat template changes answer {k} of this conversation, so its tokens "
                                "cannot be found", "use a named template", where=source)
            at, end = at
            end = self._answer_end(full, end, limit, consistent)
            pieces += [(full[cursor:at], False), (full[at:end], True)]
            cursor = end
        pieces.append((full[cursor:], False))
        return pieces

    def _answer_end(self, text: str, end: int, limit: int, consistent: bool) -> int:
        """Extend an answer over what closes it: up to the first special token after it."""
        m = self._special_re.search(text, end, limit) if self._special_re else None
        if m:
            return m.end()
        # No end marker: when the turn is known, train on all of it (its closing text).
        return limit if consistent else end

    def _auto_end_markers(self) -> list[str]:
        """Special tokens the chat template puts after an answer (e.g. <|im_end|>)."""
        probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ANSWER"}]
        try:
            text = self.tokenizer.apply_chat_template(probe, tokenize=False)
        except Exception:
            return []
        at = text.rfind("ANSWER")
        if at < 0 or self._special_re is None:
            return []
        m = self._special_re.search(text, at + len("ANSWER"))
        return [m.group(0)] if m else []

    # ------------------------------------------------------------------ shared

    def _with_system(self, messages: list[dict]) -> list[dict]:
        if self.system and not any(m["role"] == "system" for m in messages):
            return [{"role": "system", "content": self.system}, *messages]
        return list(messages)

    def _tokenize(self, batch: list[list[Piece]], truncate: bool = True) -> list[Encoded]:
        texts = [p for pieces in batch for p, _ in pieces if isinstance(p, str) and p]
        ids_iter = iter(self._token_ids(texts) if texts else [])
        out = []
        for pieces in batch:
            input_ids: list[int] = []
            labels: list[int] = []
            for p, trained in pieces:
                if isinstance(p, str):
                    if not p:
                        continue
                    p = next(ids_iter)
                input_ids += p
                labels += p if trained else [IGNORE] * len(p)
            cut = truncate and len(input_ids) > self.max_length
            if cut:
                input_ids, labels = input_ids[:self.max_length], labels[:self.max_length]
            out.append(Encoded(input_ids, labels, cut))
        return out


    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and hasattr(backend, "encode_batch_fast"):
            # The Rust tokenizer directly: same ids, without offsets and per-call Python
            # overhead (twice as fast on short pieces).
            return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------- helpers

def _bos_eos(tokenizer) -> tuple[list[int], list[int]]:
    # Qwen tokenizers start sequences without BOS (XTuner special-cases them the same way).
    bos = None if "qwen" in type(tokenizer).__name__.lower() else tokenizer.bos_token_id
    eos = tokenizer.eos_token_id
    return ([bos] if isinstance(bos, int) else []), ([eos] if isinstance(eos, int) else [])


def _turns(messages: list[dict]) -> tuple[list[tuple[str, str, str]], str, str]:
    """Group messages into (system, question, answer) turns, as XTuner does for OpenAI data.

    A system message belongs to the next turn; consecutive user messages are joined.
    Returns the turns and the pending (system, question) after the last answer.
    """
    turns = []
    system = question = ""
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "system":
            system = content
        elif role == "user":
            question += content
        else:
            turns.append((system, question, content))
            system = question = ""
    return turns, system, question


def _find(text: str, content: str, start: int, limit: int) -> tuple[int, int] | None:
    """Where an answer's text sits in the rendered conversation (templates may strip it)."""
    if not content:
        return start, start
    for needle in (content, content.strip()):
        if needle:
            at = text.find(needle, start, limit)
            if at >= 0:
                return at, at + len(needle)
    return None


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))
