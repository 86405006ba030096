"""The chat options: what a chat loads and how it answers, defined once.

`tunewiz chat` declares its flags from this type (defaults and choices read from it, in
tunewiz/commands/chat.py) and parses them into it; the TUI starts the chat server with one
as JSON (`to_json`, read back by `from_json` in engine/chat_server.py); engine/chat.py
opens a session from it. None means "as saved with the adapter / model".
"""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, asdict, dataclass, fields

from .config import Device, QuantBits
from .errors import TunewizError


@dataclass(frozen=True)
class ChatOptions:
    model: str
    adapter: str | None = None
    template: str | None = None
    system: str | None = None
    bits: QuantBits | None = None    # load the base quantized (CUDA only)
    device: Device = "auto"
    max_new_tokens: int = 256
    temperature: float = 0.0         # 0 = greedy
    top_p: float = 0.9
    raw: bool | None = None          # no template, the model continues the text; None = raw for a pretrain run

    def __post_init__(self):
        # The Literal annotations are the choice lists; the CLI's argparse checks them too,
        # this catches options that arrive as JSON.
        for name in ("bits", "device"):
            value, allowed = getattr(self, name), _allowed(_HINTS[name])
            if value not in allowed:
                raise TunewizError(f"chat option {name}: {value!r} is not one of {', '.join(map(str, allowed))}",
                                   f"use one of {', '.join(map(str, choices(name)))}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChatOptions:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "model" not in data:
            raise TunewizError("chat options are not a JSON object with a model",
                               'give one like {"model": "demo"} (ChatOptions.to_json)')
        unknown = sorted(set(data) - set(DEFAULTS) - {"model"})
        if unknown:
            raise TunewizError(f"unknown chat option(s): {', '.join(unknown)}",
                               f"known: {', '.join(f.name for f in fields(cls))}")
        return cls(**data)


def _allowed(hint) -> tuple:
    """The values a Literal annotation admits, through `| None` (None among them)."""
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    if hint is type(None):
        return (None,)
    return tuple(v for h in typing.get_args(hint) for v in _allowed(h))


_HINTS = typing.get_type_hints(ChatOptions)
# Each option's default (model has none): the CLI's flags and the TUI's fields start from these.
DEFAULTS = {f.name: f.default for f in fields(ChatOptions) if f.default is not MISSING}


def choices(name: str) -> tuple:
    """The values option `name` admits, None (its "as saved" default) left out: argparse's choices."""
    return tuple(a for a in _allowed(_HINTS[name]) if a is not None)
