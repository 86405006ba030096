"""`tunewiz chat MODEL`: talk to a model in the terminal.

``--prompt`` answers once (for scripts); otherwise a REPL that also works on piped stdin.
``--raw`` continues the text instead of answering it (no template, no history).
The session itself (loading, templates, history, raw mode) is tunewiz.engine.chat.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

# The options' defaults and choices are ChatOptions' own: nothing here repeats them.
from tunewiz.engine.contract.chat_options import DEFAULTS, ChatOptions, choices

HELP = ("commands: /reset (forget the conversation), /system TEXT (new system prompt), "
        "/raw (continue text, no template) or /chat (the chat template), /exit")
RAW_NOTE = "(raw mode: each line is continued as-is, without the chat template and without history)"
CHAT_NOTE = "(chat mode: the chat template, the conversation is remembered)"


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("chat", help="chat with a model in the terminal",
                       description="Chat with a model (a merged folder, a base with --adapter, or demo). "
                                   "The template and system prompt saved with the adapter are used unless "
                                   "--template / --system say otherwise. " + HELP + ".")
    s.add_argument("model", metavar="MODEL", help='model folder, a run folder (its merged model or adapter), '
                                                  'or "demo"')
    s.add_argument("--adapter", default=DEFAULTS["adapter"],
                   help="LoRA adapter folder to apply (from `tunewiz convert`)")
    s.add_argument("--template", default=DEFAULTS["template"],
                   help="default: the one saved with the adapter, else the tokenizer's")
    s.add_argument("--system", default=DEFAULTS["system"],
                   help="system prompt (default: the one saved with the adapter)")
    s.add_argument("--bits", type=int, choices=choices("bits"), default=DEFAULTS["bits"],
                   help="load the base quantized (CUDA)")
    s.add_argument("--prompt", default=None, help="answer once and exit")
    s.add_argument("--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"])
    s.add_argument("--temperature", type=float, default=DEFAULTS["temperature"], help="0 = greedy")
    s.add_argument("--top-p", type=float, default=DEFAULTS["top_p"])
    s.add_argument("--device", default=DEFAULTS["device"], choices=choices("device"))
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--raw", dest="raw", action="store_true",
                      help="completion mode: the text is given as-is (no chat template) and the model "
                           "continues it; each prompt stands alone. Default for a run with stage: pretrain")
    mode.add_argument("--chat", "--no-raw", dest="raw", action="store_false",
                      help="apply the chat template, also for a pretrain run")
    s.set_defaults(raw=DEFAULTS["raw"])  # None, neither flag: raw exactly for a pretrain run's model
    return s


def run(args) -> int:
    from tunewiz.engine.chat import open_session

    # Each option is the flag of its name (--prompt is the command's own, not an option).
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(ChatOptions)}
    session = open_session(ChatOptions(**options))
    if args.prompt is not None:
        print_reply(session, args.prompt)
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    try:
        repl(session, interactive)
    except KeyboardInterrupt:
        print()
    return 0


def print_reply(session, text: str) -> None:
    out = sys.stdout
    try:
        for piece in session.reply(text):
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        out.write(" [stopped]")  # Ctrl-C ends the answer, not the chat
    out.write("\n")
    out.flush()


def _read_line(interactive: bool) -> str | None:
    if interactive:
        try:
            return input(">>> ")
        except EOFError:
            return None
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


def repl(session, interactive: bool) -> None:
    if interactive:
        print(HELP)
        if session.raw:
            print(RAW_NOTE)
    while (line := _read_line(interactive)) is not None:
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session.history = []
            print("(conversation cleared)")
        elif text == "/system" or text.startswith("/system "):
            session.set_system(text[len("/system"):].strip())
            print("(system prompt set; conversation cleared)" + (" " + RAW_NOTE if session.raw else ""))
        elif text in ("/raw", "/chat"):
            session.raw = text == "/raw"
            session.history = []
            print(RAW_NOTE if session.raw else CHAT_NOTE)
        elif text.startswith("/"):
            print(f"unknown command {text.split()[0]}; {HELP}")
        else:
            print_reply(session, text)
