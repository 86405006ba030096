"""A chat model behind JSON lines on stdin/stdout, for the TUI (which never imports torch).

    python -m tunewiz.engine.chat_server '{"model": MODEL, "adapter": A, "template": T, ...}'

The one argument is a ChatOptions as JSON (engine/contract/chat_options.py, which the TUI
imports too), so the options and their defaults are written in one place.

Protocol, one JSON object per line:
- out ``{"ready": true, "model": ..., "template": ..., "raw": ...}`` once the model is loaded;
- in  ``{"id", "messages": [{role, content}...], "max_new_tokens", "temperature", "top_p", "raw"}``;
  with ``"raw": true`` the last message's text is continued as-is (no template, no history);
  without ``raw``, the model's default (raw for a pretrain run's model, which ``ready`` says);
- out ``{"id", "delta": "text"}`` for each piece, then ``{"id", "done": true}``;
- in  ``{"cancel": id}`` ends that answer early (it still gets its ``done``);
- out ``{"error": msg, "hint": ...}`` (with ``id`` when it concerns a request). A load
  error is sent the same way, then the server exits 1.
The server keeps no conversation: every request carries the whole history, so the TUI
owns "clear" and the system prompt, and one server can serve any number of chats.
"""

from __future__ import annotations

import json
import queue
import sys
import threading

from .contract.chat_options import ChatOptions
from .contract.errors import TunewizError

_out_lock = threading.Lock()


def send(obj: dict) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        sys.stdout.flush()


def read_requests(inbox: queue.Queue, cancelled: set) -> None:
    """Reader thread: requests go to the queue, cancels take effect at once."""
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            send({"error": "not a JSON line", "hint": "send one JSON object per line"})
            continue
        if isinstance(msg, dict) and "cancel" in msg:
            cancelled.add(msg["cancel"])
        elif isinstance(msg, dict):
            inbox.put(msg)
    inbox.put(None)  # stdin closed: the TUI has gone


def fit_context(encoder, messages: list[dict], max_new_tokens: int, context: int) -> list[int]:
    """Prompt ids, dropping the oldest user/assistant turns while the answer would not fit."""
    system = [m for m in messages[:1] if m.get("role") == "system"]
    turns = messages[len(system):]
    ids = encoder.prompt_ids(system + turns)
    while len(ids) + max_new_tokens > context and len(turns) > 2:
        turns = turns[2:]
        ids = encoder.prompt_ids(system + turns)
    return ids


def answer(session, request: dict, cancelled: set) -> None:
    from .generate import stream_reply

    rid = request.get("id")
    messages = request.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        send({"id": rid, "error": "messages must end with a user message", "hint": ""})
        return
    max_new = int(request.get("max_new_tokens") or session.max_new_tokens)
    if request.get("raw", session.raw):
        ids = session.completion_prompt(messages[-1].get("content", ""), max_new)
    else:
        ids = fit_context(session.encoder, messages, max_new, session.context)
    pieces = stream_reply(session.model, session.tokenizer, ids, max_new,
                          float(request.get("temperature", session.temperature)),
                          float(request.get("top_p", session.top_p)),
                          session.encoder.stop_token_ids, session.encoder.stop_words)
    for piece in pieces:
        if rid in cancelled:
            pieces.close()
            break
        send({"id": rid, "delta": piece})
    cancelled.discard(rid)
    send({"id": rid, "done": True})


def serve(session) -> int:
    inbox: queue.Queue = queue.Queue()
    cancelled: set = set()
    threading.Thread(target=read_requests, args=(inbox, cancelled), daemon=True).start()
    while (request := inbox.get()) is not None:
        try:
            answer(session, request, cancelled)
        except TunewizError as e:
            send({"id": request.get("id"), "error": e.msg, "hint": e.hint})
            send({"id": request.get("id"), "done": True})
        except Exception as e:  # one bad request must not end the chat
            send({"id": request.get("id"), "error": f"{type(e).__name__}: {e}", "hint": "this is a bug"})
            send({"id": request.get("id"), "done": True})
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) != 1 or argv[0] in ("-h", "--help"):
            raise TunewizError("usage: python -m tunewiz.engine.chat_server OPTIONS",
                               "OPTIONS is one JSON object, a ChatOptions' to_json() (engine/contract/chat_options.py)")
        opts = ChatOptions.from_json(argv[0])
        from .chat import open_session

        session = open_session(opts)
    except TunewizError as e:
        send({"error": e.msg, "hint": e.hint})
        return 1
    send({"ready": True, "model": opts.model, "adapter": opts.adapter,
          "template": session.encoder.template_name, "raw": session.raw})
    return serve(session)


if __name__ == "__main__":
    raise SystemExit(main())
