"""Kinds of data tunewiz does not train on, refused per file in one line. Torch-free.

Multimodal sets (``images`` / ``videos`` / ``audios`` keys, ``<image>`` tokens in the text,
OpenAI content parts that are not text) would train on the text with the media silently
dropped; preference sets (``chosen`` / ``rejected``) have no single answer to learn. Such
a record nearly always stands for its whole file, so the first one refuses its source: one
line naming the file, not one line per record.
"""

from __future__ import annotations

import re

MEDIA_KEYS = ("images", "videos", "audios")
MEDIA_TOKEN = re.compile(r"<(?:image|video|audio)>")
# OpenAI part types that carry media: image_url, input_image, input_audio, video_url, file...
MEDIA_PART_WORDS = ("image", "video", "audio", "file")

_HINTS = {
    "multimodal": "tunewiz trains on text only: use a text-only dataset (the media would be dropped, not learned)",
    "preference": "tunewiz trains on one answer per prompt (SFT): to learn the chosen answers, make each one "
                  "the record's output (alpaca) or its last gpt turn (sharegpt)",
}


class UnsupportedData(Exception):
    """A record of a kind tunewiz does not train on; ``message(file)`` refuses its file."""

    def __init__(self, kind: str, what: str):
        super().__init__(kind, what)
        self.kind, self.what = kind, what

    def message(self, file: str) -> str:
        label = "multimodal data" if self.kind == "multimodal" else "preference (DPO/RM) data"
        return f"{label} is not supported: {file} has {self.what}"

    @property
    def hint(self) -> str:
        return _HINTS[self.kind]


def check_record(record: dict) -> None:
    """Refuse a record by its keys, before its format is told (a preference set in alpaca
    shape has no ``output``, so it would read as an unknown format)."""
    for key in MEDIA_KEYS:
        if record.get(key):   # an empty list holds nothing that would be dropped
            raise UnsupportedData("multimodal", key)
    if "chosen" in record and "rejected" in record:
        raise UnsupportedData("preference", "chosen/rejected answers")


def check_messages(messages: list[dict]) -> None:
    """Refuse a conversation whose text points at media (LLaMA-Factory's ``<image>`` tokens)."""
    for m in messages:
        hit = MEDIA_TOKEN.search(m["content"])
        if hit:
            raise UnsupportedData("multimodal", f"{hit.group(0)} tokens")


def is_media_part(kind: object) -> bool:
    return isinstance(kind, str) and any(word in kind for word in MEDIA_PART_WORDS)
