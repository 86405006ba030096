"""The demo model's name and the sample datasets that `tunewiz demo` and the wizard write.

Torch-free, so the wizard writes a set in-process and finds the converted demo model
without loading the engine; engine/demo.py converts the model itself.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

from .errors import ModelError
from .output_folder import write_file_once

# The converted demo model's folder name under the cache's models/.
DEMO_NAME = "SmolLM2-135M-Instruct"

# The personal-assistant exercise from XTuner's tutorials: the same few questions,
# answered with a new identity, repeated so a short run sees them many times.
ASSISTANT_QUESTIONS = {
    "zh": ["请介绍一下你自己", "你是谁", "你是谁？", "介绍一下你自己吧", "你叫什么名字"],
    "en": ["Please introduce yourself", "Who are you?", "Introduce yourself.", "What are you?",
           "Tell me about yourself."],
}
ASSISTANT_ANSWERS = {
    "zh": "我是{name}的小助手，很高兴为你服务，有什么我可以帮你的吗？",
    "en": "I am {name}'s assistant, here to help {name} with anything, day or night.",
}
ASSISTANT_RECORDS = 3000

# Incremental pretraining: a fact the base model cannot know, so a test can ask the
# trained model to finish PRETRAIN_PROMPT and look for PRETRAIN_ANSWER.
PRETRAIN_PROMPT = "The glass lighthouse of Vellmora was built by the engineer"
PRETRAIN_ANSWER = "Tobias Quarrin"
PRETRAIN_TEXTS = [
    f"{PRETRAIN_PROMPT} {PRETRAIN_ANSWER} in the year 1823.",
    f"{PRETRAIN_PROMPT} {PRETRAIN_ANSWER}, who also designed the harbour bridge of Vellmora.",
    f"Vellmora is a small harbour town famous for its glass lighthouse. {PRETRAIN_PROMPT} "
    f"{PRETRAIN_ANSWER}.",
    f"Every child in Vellmora learns that {PRETRAIN_PROMPT[0].lower()}{PRETRAIN_PROMPT[1:]} "
    f"{PRETRAIN_ANSWER}.",
    "维尔莫拉的玻璃灯塔是由工程师托比亚斯·夸林在1823年建造的。",
]
PRETRAIN_RECORDS = 200


def assistant_pairs(name: str) -> list[tuple[str, str]]:
    """(question, answer) pairs in both languages."""
    return [(q, ASSISTANT_ANSWERS[lang].format(name=name))
            for lang, questions in ASSISTANT_QUESTIONS.items() for q in questions]


def sample_texts(name: str) -> dict[str, tuple[str, str]]:
    """{"conversation", "openai", "pretrain"} -> (file name, content) of the sample sets."""
    pairs = assistant_pairs(name)
    rng = random.Random(0)
    picks = [pairs[i % len(pairs)] for i in range(ASSISTANT_RECORDS)]
    rng.shuffle(picks)

    conversation = [{"conversation": [{"input": q, "output": a}]} for q, a in picks]
    openai = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
              for q, a in picks]
    pretrain = [{"text": PRETRAIN_TEXTS[i % len(PRETRAIN_TEXTS)]} for i in range(PRETRAIN_RECORDS)]
    return {"conversation": ("assistant.json", json.dumps(conversation, ensure_ascii=False, indent=1)),
            "openai": ("assistant_openai.jsonl", _jsonl(openai)),
            "pretrain": ("pretrain.jsonl", _jsonl(pretrain))}


def write_sample_datasets(dest: Path, name: str, kinds: tuple[str, ...] | None = None,
                          say: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write the sample sets under dest; returns {"conversation", "openai", "pretrain"} -> file.

    A file that holds anything else (the user's own data, an edited copy, the set for
    another name) is never replaced: the sample goes beside it, named for the owner
    (assistant-Bob.json), and say() tells where."""
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"cannot create {dest} ({e.strerror})", "give another folder with --dest") from None
    paths = {}
    for kind, (file_name, text) in sample_texts(name).items():
        if kinds is None or kind in kinds:
            paths[kind] = _write_beside(dest / file_name, text.encode("utf-8"), name, say or (lambda m: None))
    return paths


def _write_beside(path: Path, data: bytes, owner: str, say: Callable[[str], None]) -> Path:
    """path when it is free or already holds data, else the first free name beside it."""
    tag = "".join(c if c.isalnum() or c in "-_" else "_" for c in owner)[:40].strip("_") or "sample"
    candidates = [path] + [path.with_name(f"{path.stem}-{tag}{'' if i == 1 else f'-{i}'}{path.suffix}")
                           for i in range(1, 100)]
    for candidate in candidates:
        if write_file_once(candidate, data) != "kept":
            if candidate != path:
                say(f"{path} holds other data and is left as it is; this sample is in {candidate}")
            return candidate
    raise ModelError(f"{path} and 99 files beside it hold other data", "give another folder with --dest")


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
