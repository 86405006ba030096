"""What the wizard shows about a base model, read from its folder's JSON files (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

from tunewiz.engine.contract import model_facts
from tunewiz.engine.contract.errors import ModelError
from tunewiz.engine.contract.model_facts import ModelFacts

DEMO = "demo"
DEMO_LABEL = "demo: SmolLM2-135M-Instruct (bundled, CPU friendly)"


def demo_folder() -> Path | None:
    """The converted demo model, when `tunewiz demo` has prepared it."""
    from tunewiz.engine.contract.cache_dirs import cache_root
    from tunewiz.engine.contract.samples import DEMO_NAME

    folder = cache_root() / "models" / DEMO_NAME
    return folder if (folder / "config.json").is_file() else None


def read_model_facts(path: str) -> ModelFacts:
    """The facts the Model step shows: the demo's own when it is not converted yet, else
    config.json's as the engine reads them; a folder without one says why in `problem`."""
    folder = demo_folder() if path == DEMO else Path(path).expanduser()
    if folder is None:
        return ModelFacts(path, architecture="LlamaForCausalLM", model_type="llama", params=134_515_008,
                          dtype="bfloat16", hidden=576, layers=30, vocab=49152, intermediate=1536,
                          has_chat_template=True, is_causal_lm=True)
    try:
        return model_facts.read_model_facts(folder)
    except ModelError as e:
        return ModelFacts(str(folder), problem=e.msg)


def find_model_folders(extra_roots: list[Path] | None = None, limit: int = 50) -> list[Path]:
    """Local HF folders in the usual places: ./models, ~/models, the HF hub cache, ours."""
    home = Path.home()
    from tunewiz.engine.contract.cache_dirs import cache_root

    roots = [Path("models"), home / "models", cache_root() / "models", *(extra_roots or [])]
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found += [p.parent for p in sorted(root.glob("*/config.json"))]
    hub = Path(os.environ.get("HF_HOME", home / ".cache" / "huggingface")) / "hub"
    if hub.is_dir():
        found += [p.parent for p in sorted(hub.glob("models--*/snapshots/*/config.json"))]
    demo = demo_folder()
    unique = [p for p in dict.fromkeys(p.resolve() for p in found) if demo is None or p != demo.resolve()]
    return unique[:limit]
