"""The template registry: named prompt templates with XTuner's semantics. Torch-free.

A template turns a conversation into text turn by turn:

    turn 1:  system(S) + instruction(U1)   [A1 + suffix]   (eos)   sep
    turn 2:  instruction(U2)               [A2 + suffix]   (eos)   sep
    ...

Brackets mark what is trained. ``system`` appears only on the turn that carries a system
message (normally the first). When ``suffix_as_eos`` is true the suffix ends an answer and
no EOS token follows; otherwise the tokenizer's EOS follows each answer (trained) and the
next turn starts with BOS again. ``sep`` is never trained. ``stop_words`` end generation;
the tokenizer's EOS is always a stop word too.

The strings match the templates XTuner users already train with, so an adapter trained
there and chatted with here (or the other way round) sees the same text.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True)
class Template:
    name: str
    instruction: str                 # must contain "{input}"; may contain "{round}" (1-based)
    system: str = ""                 # must contain "{system}" when set
    suffix: str = ""                 # appended to every answer, trained
    suffix_as_eos: bool = False      # the suffix ends the answer: no EOS token after it
    sep: str = ""                    # between turns, not trained
    stop_words: tuple[str, ...] = field(default_factory=tuple)

    def render_system(self, text: str) -> str:
        # An empty system prompt renders nothing, not an empty system block.
        return self.system.format(system=text) if text and self.system else ""

    def render_instruction(self, text: str, round_: int) -> str:
        return self.instruction.format(input=text, round=round_)

    @property
    def needs_eos(self) -> bool:
        return not self.suffix_as_eos


_IM = "<|im_start|>{role}\n{body}<|im_end|>\n"
_CHATML_SYSTEM = _IM.format(role="system", body="{system}")
_CHATML_INSTRUCTION = _IM.format(role="user", body="{input}") + "<|im_start|>assistant\n"

_L3_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"

TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template(
        name="default",
        system="<|System|>:{system}\n",
        instruction="<|User|>:{input}\n<|Bot|>:",
        sep="\n",
    ),
    Template(
        name="internlm2_chat",
        system=_CHATML_SYSTEM,
        instruction=_CHATML_INSTRUCTION,
        suffix="<|im_end|>",
        suffix_as_eos=True,
        sep="\n",
        stop_words=("<|im_end|>",),
    ),
    Template(
        name="qwen_chat",
        system=_CHATML_SYSTEM,
        instruction=_CHATML_INSTRUCTION,
        suffix="<|im_end|>",
        suffix_as_eos=True,
        sep="\n",
        stop_words=("<|im_end|>", "<|endoftext|>"),
    ),
    Template(
        # Qwen3 thinks before answering unless the answer opens with an empty think block
        # (its own chat template's enable_thinking=False). Putting that block in the
        # untrained prompt keeps the fine-tuned model in non-thinking mode when it chats.
        name="qwen3_chat",
        system=_CHATML_SYSTEM,
        instruction=_CHATML_INSTRUCTION + "<think>\n\n</think>\n\n",
        suffix="<|im_end|>",
        suffix_as_eos=True,
        sep="\n",
        stop_words=("<|im_end|>", "<|endoftext|>"),
    ),
    Template(
        name="llama3_chat",
        system=_L3_HEADER.format(role="system") + "{system}<|eot_id|>",
        instruction=(_L3_HEADER.format(role="user") + "{input}<|eot_id|>"
                     + _L3_HEADER.format(role="assistant")),
        suffix="<|eot_id|>",
        suffix_as_eos=True,
        stop_words=("<|eot_id|>",),
    ),
    Template(
        name="internlm_chat",
        system="<|System|>:{system}\n",
        instruction="<|User|>:{input}<eoh>\n<|Bot|>:",
        suffix="<eoa>",
        suffix_as_eos=True,
        sep="\n",
        stop_words=("<eoa>",),
    ),
    Template(
        name="zephyr",
        system="<|system|>\n{system}\n",
        instruction="<|user|>\n{input}\n<|assistant|>\n",
        sep="\n",
    ),
    Template(
        name="llama2_chat",
        # XTuner's llama2_chat keeps Meta's default system text in front of the user's.
        system=("[INST] <<SYS>>\n You are a helpful, respectful and honest assistant. Always answer "
                "as helpfully as possible, while being safe. Your answers should not include any "
                "harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. Please "
                "ensure that your responses are socially unbiased and positive in nature.\n"
                "{system}\n<</SYS>>\n [/INST] "),
        instruction="[INST] {input} [/INST]",
        sep="\n",
    ),
    Template(
        name="mistral",
        system="[INST] {system} [/INST]\n",
        instruction="[INST] {input} [/INST]",
        sep="\n",
    ),
    Template(
        name="phi3_chat",
        system="<|system|>\n{system}<|end|>\n",
        instruction="<|user|>\n{input}<|end|>\n<|assistant|>\n",
        suffix="<|end|>",
        suffix_as_eos=True,
        sep="\n",
        stop_words=("<|end|>",),
    ),
    Template(
        name="gemma",
        system="<start_of_turn>system\n{system}<end_of_turn>\n",
        instruction="<start_of_turn>user\n{input}<end_of_turn>\n<start_of_turn>model\n",
        suffix="<end_of_turn>",
        suffix_as_eos=False,
        sep="\n",
        stop_words=("<end_of_turn>",),
    ),
)}

AUTO = "auto"


def template_names() -> list[str]:
    """Every name a config's ``data.template`` accepts, ``auto`` first."""
    return [AUTO, *TEMPLATES]


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"unknown template {name!r}",
                          f"use auto or one of: {', '.join(TEMPLATES)}") from None


# --------------------------------------------------------------------------- as Jinja
# merge writes a named template into the merged folder's tokenizer as a chat_template, so
# plain transformers renders conversations the way training did (a test compares the two).

def _fields_to_jinja(fmt: str, values: dict[str, str]) -> str:
    """A str.format template as Jinja: literal text quoted, {field} as the given expression."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(fmt):
        if literal:
            out.append("{{ " + _jinja_str(literal) + " }}")
        if name is not None:
            out.append("{{ " + values[name] + " }}")
    return "".join(out)


def _jinja_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def template_to_jinja(t, bos: bool, default_system: str = "") -> str:
    """A chat_template that renders what the Encoder builds for a named template.

    Turns are (system?, user, assistant): a system message goes with the next turn, user
    messages before an answer are joined; BOS opens the first turn and every turn after an
    EOS; each answer gets the suffix, EOS when the template wants one, then sep. The
    system prompt used in training is the default for a conversation that brings none.
    """
    fields = {"system": "ns.system", "input": "ns.question", "round": "ns.round"}
    system = _fields_to_jinja(t.system, fields) if t.system else ""
    instruction = _fields_to_jinja(t.instruction, fields)
    open_turn = ("{% if ns.bos %}{{ bos_token }}{% endif %}" if bos else "") + \
        ("{% if ns.system %}" + system + "{% endif %}" if system else "") + instruction
    answer_end = ("{{ " + _jinja_str(t.suffix) + " }}" if t.suffix else "") + \
        ("{{ eos_token }}" if t.needs_eos else "")
    sep = "{{ " + _jinja_str(t.sep) + " }}" if t.sep else ""
    return (
        "{% set ns = namespace(system=" + _jinja_str(default_system) + ", question='', round=1, bos=true) %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{% set ns.system = message['content'] %}"
        "{% elif message['role'] == 'user' %}{% set ns.question = ns.question + message['content'] %}"
        "{% else %}" + open_turn + "{% generation %}{{ message['content'] }}" + answer_end + "{% endgeneration %}"
        + sep +
        "{% set ns.round = ns.round + 1 %}{% set ns.system = '' %}{% set ns.question = '' %}"
        "{% set ns.bos = " + ("true" if t.needs_eos else "false") + " %}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}" + open_turn + "{% endif %}"
    )
