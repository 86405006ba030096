"""Chat: the JSON-lines chat server on the tiny model, and the chat screen on top of it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunewiz.engine.contract.chat_options import ChatOptions
from tunewiz.engine.contract.config import Config, dump_yaml
from tunewiz.tui.app import TunewizApp
from tunewiz.tui.screens.chat import ChatScreen
from tunewiz.tui.services.chat_client import ChatTarget
from tunewiz.tui.widgets.chat.chat_column import Bubble, ChatColumn

from support.greedy import chat_prompt, hf_greedy
from support.tui import painted, screen_text, wait_for

QUESTION = {"role": "user", "content": "Please introduce yourself"}


def serve(model: Path, *requests: dict, timeout: int = 120) -> list[dict]:
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    options = ChatOptions(model=str(model)).to_json()
    out = subprocess.run([sys.executable, "-m", "tunewiz.engine.chat_server", options], input=lines,
                         capture_output=True, text=True, timeout=timeout)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_chat_server_streams_answers_and_reports_errors(tiny_model):
    replies = serve(tiny_model,
                    {"id": 1, "messages": [QUESTION], "max_new_tokens": 8, "temperature": 0},
                    {"id": 2, "messages": [{"role": "assistant", "content": "hi"}]},
                    {"id": 3, "messages": [{"role": "system", "content": "Be brief."}, QUESTION],
                     "max_new_tokens": 8, "temperature": 0.7, "top_p": 0.9})
    assert replies[0]["ready"] is True
    first = [r for r in replies if r.get("id") == 1]
    assert first[-1] == {"id": 1, "done": True}
    assert 1 <= len(first) - 1 <= 8 and all("delta" in r for r in first[:-1])
    assert [r for r in replies if r.get("id") == 2][0]["error"].startswith("messages must end")
    assert [r for r in replies if r.get("id") == 3][-1] == {"id": 3, "done": True}


def test_chat_server_load_error_is_one_json_line(tmp_path):
    replies = serve(tmp_path / "missing")
    assert len(replies) == 1 and "does not exist" in replies[0]["error"] and replies[0]["hint"]


@pytest.mark.parametrize("options, words", [
    ('{"model": "demo", "bits": 5}', ["bits", "not one of"]),
    ('{"model": "demo", "colour": "red"}', ["unknown chat option", "colour"]),
    ("demo", ["not a JSON object"]),
])
def test_chat_server_bad_options_are_one_json_line(options, words):
    out = subprocess.run([sys.executable, "-m", "tunewiz.engine.chat_server", options], input="",
                         capture_output=True, text=True, timeout=60)
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 1 and len(replies) == 1 and replies[0]["hint"]
    assert all(w in replies[0]["error"] for w in words), replies


def test_chat_target_starts_the_server_with_its_options():
    argv = ChatTarget("tuned", "m", adapter="a").argv("py")
    assert argv[:3] == ["py", "-m", "tunewiz.engine.chat_server"]
    assert ChatOptions.from_json(argv[3]) == ChatOptions(model="m", adapter="a")


@pytest.fixture
def tuned_run(tiny_model, tmp_path) -> Path:
    """A finished run whose merged model is (a copy of) the tiny model."""
    run = tmp_path / "work_dirs" / "assistant-20251122-080000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(_config(tiny_model)))
    shutil.copytree(tiny_model, run / "merged")
    return run


def _config(model: Path, stage: str = "sft") -> Config:
    cfg = Config(name="assistant", stage=stage)
    cfg.model.path = str(model)
    return cfg


async def ask_and_wait(pilot, text: str, columns: int) -> list[ChatColumn]:
    screen = pilot.app.screen
    await wait_for(pilot, lambda: len(screen.ready) == columns and all(screen.ready), timeout=60)
    screen.query_one("#chat-settings #chat-max-new").value = "12"
    if text.isascii():
        await pilot.press(*text, "enter")
    else:  # the pilot presses keys by name, and some characters ("·") have none: paste those
        screen.query_one("#chat-input").value = text
        await pilot.press("enter")
    await wait_for(pilot, lambda: not screen.answering and all(
        len(c.history) >= 2 for c in screen.columns()), timeout=60)
    return screen.columns()


async def test_side_by_side_chat_streams_both_models(tuned_run, tmp_path):
    app = TunewizApp(tmp_path / "work_dirs", cursor_blink=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ChatScreen(run=tuned_run, side_by_side=True))
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
        base, tuned = await ask_and_wait(pilot, "Hello", columns=2)
        assert "base" in base.title and "fine-tuned (merged)" in tuned.title
        for column in (base, tuned):
            assert column.history[0] == {"role": "user", "content": "Hello"}
            assert column.history[1]["role"] == "assistant"
        # Same weights, greedy decoding: the two columns answer alike.
        assert base.history[1]["content"] == tuned.history[1]["content"]
        # Multi-turn: the second question carries the first exchange.
        await pilot.press(*"Again", "enter")
        await wait_for(pilot, lambda: not app.screen.answering and len(base.history) == 4, timeout=60)
        await pilot.press("ctrl+l")
        assert base.history == []
        await wait_for(pilot, lambda: not base.query(Bubble))    # removing the bubbles takes a turn
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChatScreen))  # after its servers closed


async def test_a_question_sent_while_loading_reaches_both_models(tuned_run, tmp_path):
    """Typed before either server has loaded: it waits for both, so both columns answer it."""
    app = TunewizApp(tmp_path / "work_dirs", cursor_blink=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = ChatScreen(run=tuned_run, side_by_side=True)
        app.push_screen(screen)
        await wait_for(pilot, lambda: app.screen is screen and screen.query("#chat-input"))
        screen.query_one("#chat-max-new").value = "12"
        assert not any(screen.ready)  # both columns still say "loading"
        await pilot.press(*"Hello", "enter")
        await wait_for(pilot, lambda: not screen.answering and all(
            len(c.history) == 2 for c in screen.columns()), timeout=60)
        base, tuned = screen.columns()
        for column in (base, tuned):
            assert column.history[0] == {"role": "user", "content": "Hello"}
            assert column.history[1]["role"] == "assistant" and column.history[1]["content"]
        assert base.history == tuned.history  # same weights, greedy: the same answer
        assert [b.text for b in base.query(Bubble)] == [b.text for b in tuned.query(Bubble)]


async def test_chat_without_a_fine_tuned_model_says_what_to_do(tiny_model, tmp_path):
    run = tmp_path / "work_dirs" / "assistant-20251122-080000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(_config(tiny_model)))
    app = TunewizApp(tmp_path / "work_dirs", cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = ChatScreen(run=run, side_by_side=True)
        app.push_screen(screen)
        await wait_for(pilot, lambda: 1 in screen.failed, timeout=30)  # the fine-tuned column
        assert "no fine-tuned model yet" in await painted(pilot)
        await pilot.press("escape")


# The incremental-pretraining check of the XTuner tutorials: how the model continues this.
RAW_PROMPT = "书生·浦语大模型实战营第三期是"


async def test_a_pretrain_run_chats_raw_and_ctrl_r_switches(tiny_model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "work_dirs" / "pt-20251122-080000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(_config(tiny_model, stage="pretrain")))
    shutil.copytree(tiny_model, run / "merged")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    raw = hf_greedy(model, tok, tok(RAW_PROMPT).input_ids, 12, tok.eos_token_id)
    templated = hf_greedy(model, tok, chat_prompt(tok, RAW_PROMPT), 12, tok.eos_token_id)
    assert raw and templated and raw != templated

    app = TunewizApp(tmp_path / "work_dirs", cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = ChatScreen(run=run, side_by_side=True)
        app.push_screen(screen)
        # The servers are starting (each column has its state) and the status line says so.
        await wait_for(pilot, lambda: app.screen is screen and len(screen.ready) == 2, timeout=30)
        assert screen.raw and "mode: raw" in await painted(pilot)
        # The key and what it does in the footer at 80x24, beside ctrl+x (which the input hid).
        await wait_for(pilot, lambda: all(k in screen_text(app).splitlines()[-1] for k in ("^r raw/chat", "^x stop")))
        for mode, expected in (("raw", raw), ("chat", templated), ("raw", raw)):
            if mode != ("raw" if screen.raw else "chat"):
                await pilot.press("ctrl+r")
                await wait_for(pilot, lambda: screen.raw == (mode == "raw"))
                assert f"mode: {mode}" in await painted(pilot)
                assert all(c.history == [] for c in screen.columns())  # a fresh start in the new mode
            for _ in range(2):  # raw turns stand alone; chat turns carry the conversation
                before = len(screen.columns()[0].history)
                columns = await ask_and_wait(pilot, RAW_PROMPT, columns=2)
                await wait_for(pilot, lambda: all(len(c.history) == before + 2 for c in columns), timeout=60)
                if mode == "raw" or before == 0:
                    assert [c.history[-1]["content"] for c in columns] == [expected, expected], mode
