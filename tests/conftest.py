"""Shared fixtures: a tiny random Llama with a locally trained byte-level BPE tokenizer.

Built once per session in a few seconds (well under 1 MB), so the fast tier never needs a
hub or the demo model. The tokenizer carries a ChatML chat template and the special tokens
that the named templates use, so every template can be exercised on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import warm_cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tokenized-data caches of this test process go to a folder of its own (each test's data
# lives in its own tmp folder, so caches never cross tests), never the user's cache.
_OWN_DATA_CACHE = None if "TUNEWIZ_DATA_CACHE" in os.environ else tempfile.mkdtemp(prefix="tunewiz-data-cache-")
if _OWN_DATA_CACHE:
    os.environ["TUNEWIZ_DATA_CACHE"] = _OWN_DATA_CACHE
# The tiny model is far too small to gain from threads, and two OpenMP threads on two busy
# cores spin-wait badly (tens of times slower). Tests on the demo model pass their own count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


def demo_threads() -> int:
    """Threads for a process on the demo model: the cores this test worker may use (up to
    2), so parallel workers (`pytest -n`) never oversubscribe the machine."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    """Longest tests first: with `-n` (work stealing) the quick ones fill in around them
    instead of one long test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
           "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|begin_of_text|>"]
CORPUS = [
    "Hello, I am the assistant of tunewiz. I am happy to help you.",
    "Please introduce yourself. Who are you? What can you do?",
    "我是小助手，很高兴为你服务。请介绍一下你自己。",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "system user assistant Bot User System: <|> {} [] () ... ,;",
] * 20


def build_tiny_model(dest: Path, **shape) -> Path:
    """The tiny model; `shape` overrides LlamaConfig fields for bigger test models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    import torch

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>",
                                     pad_token="<pad>", chat_template=CHATML)
    hf_tok.save_pretrained(dest)

    torch.manual_seed(0)
    dims = dict(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    dims.update(shape)
    shape = {}
    cfg = LlamaConfig(**dims,
                      bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                      pad_token_id=hf_tok.pad_token_id, tie_word_embeddings=False, **shape)
    LlamaForCausalLM(cfg).save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Path to a tiny random Llama folder (tokenizer with chat template included)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def pytest_configure(config):
    """Each test process (not an xdist controller) starts its warm CLI server now, so the
    server's imports overlap with collection and the tiny-model build."""
    if not (config.getoption("numprocesses", None) and not hasattr(config, "workerinput")):
        warm_cli.start({**os.environ, "HF_HUB_OFFLINE": "1"})


def pytest_unconfigure(config):
    warm_cli.stop()
    if _OWN_DATA_CACHE:
        shutil.rmtree(_OWN_DATA_CACHE, ignore_errors=True)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600,
            input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real `tunewiz` CLI in its own process, the way a user does (forked from a
    warm server that has already imported torch; see warm_cli.py)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return warm_cli.run(args, cwd=cwd, env=full_env, timeout=timeout, input=input)


@pytest.fixture
def cli():
    return run_cli
