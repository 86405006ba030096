"""Generation as a generator: ``stream_reply`` yields text as it is decoded.

The chat REPL, ``chat --prompt`` and the training loop's eval answers are all thin
consumers of it (``completion_ids`` is their prompt when there is no template). It runs one sequence with a KV cache (a prompt pass, then one token per
step), works on plain and peft models alike, and decodes incrementally so a multi-byte
character split across tokens (common for Chinese in byte-level BPE) is only yielded once
it is whole.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

REPLACEMENT_CHAR = "\ufffd"  # what a decoder gives for an incomplete UTF-8 sequence


class IncrementalDecoder:
    """Turns a growing list of token ids into the newly completed text.

    Decoding a token alone loses context (leading-space rules of SentencePiece, bytes of a
    character spread over tokens), so each step decodes a short window that starts a few
    tokens back and returns only what the newest tokens added to it.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.window_start = 0  # first id of the text already returned, kept for context
        self.done_upto = 0     # ids before this are fully returned

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._text(self.ids[self.window_start:self.done_upto])
        after = self._text(self.ids[self.window_start:])
        if after.endswith(REPLACEMENT_CHAR) or len(after) <= len(before):
            return ""  # an incomplete character, or a token that adds no text yet
        self.window_start, self.done_upto = self.done_upto, len(self.ids)
        return after[len(before):]

    def flush(self) -> str:
        """Whatever is left at the end, less a character whose bytes were cut off (when
        max_new_tokens stops in the middle of one, its start decodes as U+FFFD, which
        would end the answer in a "�")."""
        before = self._text(self.ids[self.window_start:self.done_upto])
        after = self._text(self.ids[self.window_start:])
        self.window_start = self.done_upto = len(self.ids)
        return after[len(before):].rstrip(REPLACEMENT_CHAR) if after.startswith(before) else ""


class StopWordFilter:
    """Holds back text that might be the start of a stop word; reports when one appears."""

    def __init__(self, stop_words: Iterable[str]):
        self.stop_words = [w for w in stop_words if w]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        text = self.pending + piece
        hits = [text.find(w) for w in self.stop_words if w in text]
        if hits:
            self.stopped = True
            self.pending = ""
            return text[:min(hits)]
        keep = max((k for w in self.stop_words for k in range(1, len(w)) if text.endswith(w[:k])), default=0)
        self.pending = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text


def completion_ids(tokenizer, text: str) -> list[int]:
    """The prompt for a completion (no chat template): the text as the tokenizer itself
    encodes it, with whatever special tokens it adds (a BOS for Llama-style tokenizers).
    A pretrain run's eval answers and chat's raw mode both start from it, so the model
    simply continues the text."""
    return list(tokenizer(text).input_ids)


def end_token_ids(model, tokenizer, stop_token_ids: Iterable[int] = (), stop_words: Iterable[str] = ()) -> set[int]:
    """EOS of the tokenizer and of the generation config, the given ids, and stop words
    that are single special tokens (those never reach the decoded text, so they must stop by id)."""
    ids = {int(i) for i in stop_token_ids}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update(int(i) for i in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]))
    special = set(getattr(tokenizer, "all_special_tokens", [])) | set(tokenizer.get_added_vocab())
    for word in stop_words:
        if word in special:
            ids.add(int(tokenizer.convert_tokens_to_ids(word)))
    return ids


def _pick_token(logits, temperature: float, top_p: float, generator=None) -> int:
    """Greedy at temperature 0; else nucleus sampling over the smallest set with mass top_p."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs[mass_before >= top_p] = 0.0  # the top token always survives
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


def stream_reply(model, tokenizer, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 0.9, stop_token_ids: Iterable[int] = (),
                 stop_words: Iterable[str] = (), agree: Callable[[int], int] | None = None) -> Iterator[str]:
    """Yield the reply to prompt_ids piece by piece; stops at EOS, a stop token or a stop word.

    With weights sharded across ranks (ZeRO-3) every forward pass is a collective, so all
    ranks must pick the same tokens and stop at the same step; ``agree(token)`` returns the
    token rank 0 picked, and every rank continues with that one.

    The model is put in eval mode while generating (no dropout in the answers a training
    loop shows) and given back in the mode it came in, also when the caller stops early.
    """
    import torch

    stop_words = list(stop_words)
    ends = end_token_ids(model, tokenizer, stop_token_ids, stop_words)
    decoder = IncrementalDecoder(tokenizer)
    words = StopWordFilter(stop_words)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        # no_grad, not inference_mode: under ZeRO-3 the forward gathers weights into the
        # parameters themselves, and inference tensors there would break the next backward.
        with torch.no_grad():
            out = model(input_ids=torch.tensor([list(prompt_ids)], device=device), use_cache=True)
            for step in range(max_new_tokens):
                token = _pick_token(out.logits[0, -1], temperature, top_p)
                if agree is not None:
                    token = agree(token)
                if token in ends:
                    break
                piece = words.feed(decoder.push(token))
                if piece:
                    yield piece
                if words.stopped:
                    return
                if step + 1 < max_new_tokens:
                    out = model(input_ids=torch.tensor([[token]], device=device),
                                past_key_values=out.past_key_values, use_cache=True)
            tail = words.feed(decoder.flush())
            if not words.stopped:
                tail += words.flush()
            if tail:
                yield tail
    finally:
        if was_training:
            model.train()
