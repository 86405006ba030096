"""The tokenizer that convert and merge write beside the weights, loadable by transformers 4.x and 5.x.

transformers 5 saves ``tokenizer_class: TokenizersBackend`` (a name 4.x does not have: it
fails with "Tokenizer class TokenizersBackend does not exist") and its extra special tokens
as a list under ``extra_special_tokens``, a key that 4.x reads as a name -> token mapping
(it fails with "'list' object has no attribute 'keys'"). Both versions read the
older spelling the same way: ``PreTrainedTokenizerFast`` (in 5.x an alias of the tokenizers
backend) over tokenizer.json, and the list under ``additional_special_tokens``. A
model-specific class (Qwen2Tokenizer, LlamaTokenizer, ...) exists in both and is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

TOKENIZER_CONFIG = "tokenizer_config.json"
FAST_CLASS = "PreTrainedTokenizerFast"
# Keys transformers 5 writes that are how the tokenizer was loaded, not what it is.
_LOAD_ARGUMENTS = ("is_local", "local_files_only")

Say = Callable[[str], None]


def portable_config(config: dict, has_tokenizer_json: bool) -> dict:
    """tokenizer_config.json content that transformers 4.x and 5.x both load the same way."""
    out = dict(config)
    cls = out.get("tokenizer_class")
    # v5's backend classes (TokenizersBackend, SentencePieceBackend, ...) are new names; over a
    # tokenizer.json the fast tokenizer both versions have is the same tokenizer.
    if isinstance(cls, str) and cls.endswith("Backend") and has_tokenizer_json:
        out["tokenizer_class"] = FAST_CLASS
    extra = out.get("extra_special_tokens")
    if isinstance(extra, list):
        del out["extra_special_tokens"]
        known = out.get("additional_special_tokens")
        merged = list(known) if isinstance(known, list) else []
        out["additional_special_tokens"] = merged + [t for t in extra if t not in merged]
    for key in _LOAD_ARGUMENTS:
        out.pop(key, None)
    return out


def make_portable(folder: Path) -> None:
    """Rewrite folder's tokenizer_config.json in place (see portable_config)."""
    path = Path(folder) / TOKENIZER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    fixed = portable_config(config, (Path(folder) / "tokenizer.json").is_file())
    if fixed != config:
        path.write_text(json.dumps(fixed, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_tokenizer(tokenizer, dest: Path, template_name: str | None, default_system: str, say: Say) -> bool:
    """Save tokenizer into dest with the chat template it was trained with, loadable by 4.x and
    5.x. True when the saved chat template renders what training saw (see ensure_chat_template)."""
    same = ensure_chat_template(tokenizer, template_name, default_system, say)
    tokenizer.save_pretrained(dest)
    make_portable(dest)
    return same


def ensure_chat_template(tokenizer, template_name: str | None, default_system: str, say: Say) -> bool:
    """Give plain transformers users the template the model was trained with. False when the
    tokenizer keeps a chat template of its own that is not the one training used."""
    if not template_name or template_name == "auto":  # training used the tokenizer's own
        return bool(getattr(tokenizer, "chat_template", None))
    from .contract.templates import get_template, template_to_jinja
    from .encode import Encoder

    uses_bos = bool(Encoder(tokenizer, template_name).bos_ids)
    ours = template_to_jinja(get_template(template_name), uses_bos, default_system)
    own = getattr(tokenizer, "chat_template", None)
    if own == ours:  # written by an earlier convert of the same adapter
        return True
    if own:
        say(f"note: keeping the tokenizer's own chat template (trained with {template_name})")
        return False
    tokenizer.chat_template = ours
    say(f"wrote a chat template for {template_name}")
    return True
