"""Streaming generation and `tunewiz chat`, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.adapter_fixtures import add_lora_checkpoint, make_run
from support.greedy import chat_prompt as prompt_for, hf_greedy

from tunewiz.engine.generate import IncrementalDecoder, stream_reply


@pytest.fixture(scope="module")
def loaded(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval(), \
        AutoTokenizer.from_pretrained(tiny_model)


def test_stream_reply_matches_transformers_greedy(loaded):
    model, tok = loaded
    ids = prompt_for(tok, "Who are you?")
    pieces = list(stream_reply(model, tok, ids, 40))
    assert len(pieces) > 1  # streamed, not one blob
    assert "".join(pieces) == hf_greedy(model, tok, ids, 40, tok.eos_token_id)


def test_stream_reply_on_peft_model_restores_training_mode(loaded, tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    _, tok = loaded
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False,
                                                 lora_dropout=0.5))
    peft_model.train()
    ids = prompt_for(tok, "Hello")
    first = "".join(stream_reply(peft_model, tok, ids, 20))
    assert peft_model.training  # given back as it came
    assert first == "".join(stream_reply(peft_model, tok, ids, 20))  # no dropout while answering
    peft_model.eval()
    assert first == hf_greedy(peft_model, tok, ids, 20, tok.eos_token_id)


def test_stop_word_cuts_answer(loaded):
    model, tok = loaded
    ids = prompt_for(tok, "Who are you?")
    full = "".join(stream_reply(model, tok, ids, 40))
    word = full[len(full) // 2:len(full) // 2 + 3]
    assert word
    cut = "".join(stream_reply(model, tok, ids, 40, stop_words=[word]))
    assert cut == full[:full.index(word)]


def test_sampling_is_seeded_by_torch(loaded):
    import torch

    model, tok = loaded
    ids = prompt_for(tok, "Hello")
    torch.manual_seed(3)
    a = "".join(stream_reply(model, tok, ids, 20, temperature=1.0, top_p=0.9))
    torch.manual_seed(3)
    assert a == "".join(stream_reply(model, tok, ids, 20, temperature=1.0, top_p=0.9))


def test_incremental_decode_keeps_chinese_whole(loaded):
    _, tok = loaded
    text = "我是小助手，很高兴为你服务。Hello 你好"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    dec = IncrementalDecoder(tok)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert len([p for p in pieces if p]) > 3


# --------------------------------------------------------------------------- the CLI

def test_chat_prompt_answers_once(cli, tiny_model, loaded):
    model, tok = loaded
    res = cli("chat", str(tiny_model), "--prompt", "Who are you?", "--max-new-tokens", "12")
    assert res.returncode == 0, res.stderr
    expected = hf_greedy(model, tok, prompt_for(tok, "Who are you?"), 12, tok.eos_token_id)
    assert expected and res.stdout == expected + "\n"


def one_answer(model: Path, adapter: Path | None, system: str | None, prompt: str, max_new_tokens: int = 8) -> str:
    """What `tunewiz chat MODEL [--adapter A] [--system S] --prompt P` prints, answered in this process."""
    from tunewiz.engine.chat import ChatOptions, open_session

    opts = ChatOptions(model=str(model), adapter=str(adapter) if adapter else None, system=system,
                       max_new_tokens=max_new_tokens, device="cpu")
    return "".join(open_session(opts).reply(prompt)).strip()


def test_chat_with_adapter_uses_saved_system_prompt(cli, tiny_model, tmp_path):
    run = make_run(tmp_path / "work_dirs", tiny_model, system="You are Wiz.")
    add_lora_checkpoint(run, tiny_model, step=2)
    adapter = tmp_path / "adapter"
    assert cli("convert", str(run), str(adapter)).returncode == 0
    with_saved = cli("chat", str(tiny_model), "--adapter", str(adapter), "--prompt", "Hi", "--max-new-tokens", "8")
    assert with_saved.returncode == 0, with_saved.stderr
    # The two references come from the same session code in this process (a CLI process
    # each would only add start-up time).
    other = one_answer(tiny_model, adapter, system="", prompt="Hi")
    base = one_answer(tiny_model, None, system="You are Wiz.", prompt="Hi")
    assert with_saved.stdout.strip() and base.strip()
    assert with_saved.stdout.strip() != other  # the saved system prompt was used
    assert with_saved.stdout.strip() != base  # the adapter was applied
    assert other  # the answer without the saved prompt is not simply empty
    assert with_saved.stdout.strip() == one_answer(tiny_model, adapter, system=None, prompt="Hi")  # same code path


def test_chat_repl_reads_piped_stdin(cli, tiny_model):
    script = "Hello\n/reset\n/system Be brief.\nWho are you?\n/bogus\n/exit\nnever read\n"
    res = cli("chat", str(tiny_model), "--max-new-tokens", "6", input=script)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "(conversation cleared)" in out and "(system prompt set" in out and "unknown command /bogus" in out
    assert len(out.strip().splitlines()) >= 5


def test_chat_remembers_turns(tiny_model):
    from tunewiz.engine.chat import ChatOptions, open_session

    session = open_session(ChatOptions(model=str(tiny_model), max_new_tokens=6, device="cpu"))
    first = "".join(session.reply("Hello"))
    "".join(session.reply("Who are you?"))
    assert [m["role"] for m in session.history] == ["user", "assistant", "user", "assistant"]
    assert session.history[1]["content"] == first
    session.set_system("Be brief.")
    assert session.history == []


# --------------------------------------------------------------------------- raw (completion) mode

# The incremental-pretraining check of the XTuner tutorials: how the model continues this.
RAW_PROMPT = "书生·浦语大模型实战营第三期是"


def test_chat_raw_continues_the_text_without_template(cli, tiny_model, loaded):
    model, tok = loaded
    # Piped twice: raw turns stand alone, so the second continuation is the first one again.
    res = cli("chat", str(tiny_model), "--raw", "--max-new-tokens", "16", input=f"{RAW_PROMPT}\n{RAW_PROMPT}\n")
    assert res.returncode == 0, res.stderr
    expected = hf_greedy(model, tok, tok(RAW_PROMPT).input_ids, 16, tok.eos_token_id)
    templated = hf_greedy(model, tok, prompt_for(tok, RAW_PROMPT), 16, tok.eos_token_id)
    assert expected and expected != templated
    assert res.stdout == f"{expected}\n{expected}\n"


def pretrain_run(root: Path, base: Path) -> Path:
    """A stage: pretrain LoRA run, converted: its adapter's tunewiz.json says pretrain."""
    from tunewiz.engine.contract.config import Config, DataConfig, ModelConfig, dump_yaml
    from tunewiz.engine.convert import convert_checkpoint

    run = root / "pt-20250101-000000"
    (run / "logs").mkdir(parents=True)
    cfg = Config(name="pt", model=ModelConfig(path=str(base)), method="lora", stage="pretrain",
                 data=DataConfig(files=["data.json"]))
    (run / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    add_lora_checkpoint(run, base, step=2)
    convert_checkpoint(run, run / "adapter", say=lambda *_: None)
    return run


def test_a_pretrain_run_chats_raw_unless_told_chat(cli, tiny_model, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = pretrain_run(tmp_path / "work_dirs", tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                                      run / "adapter").eval()
    raw = hf_greedy(tuned, tok, tok(RAW_PROMPT).input_ids, 12, tok.eos_token_id)
    templated = hf_greedy(tuned, tok, prompt_for(tok, RAW_PROMPT), 12, tok.eos_token_id)
    assert raw and templated and raw != templated
    # The run itself (its adapter on the run's base), and the adapter given by hand.
    by_run = cli("chat", str(run), "--max-new-tokens", "12", input=RAW_PROMPT + "\n")
    assert by_run.returncode == 0, by_run.stderr
    assert by_run.stdout == raw + "\n"
    by_adapter = cli("chat", str(tiny_model), "--adapter", str(run / "adapter"), "--prompt", RAW_PROMPT,
                     "--max-new-tokens", "12")
    assert by_adapter.stdout == raw + "\n", by_adapter.stderr
    for flag in ("--chat", "--no-raw"):
        forced = cli("chat", str(run), flag, "--prompt", RAW_PROMPT, "--max-new-tokens", "12")
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout == templated + "\n"


def test_chat_repl_switches_mode(tiny_model):
    from tunewiz.engine.chat import ChatOptions, open_session

    session = open_session(ChatOptions(model=str(tiny_model), max_new_tokens=6, device="cpu"))
    assert not session.raw  # a model of no pretrain run: the chat template
    "".join(session.reply("Hello"))
    session.raw = True
    first = "".join(session.reply(RAW_PROMPT))
    assert first == "".join(session.reply(RAW_PROMPT)) and len(session.history) == 2  # raw turns are not kept


def test_chat_run_without_a_model_exit_1(cli, tiny_model, tmp_path):
    run = make_run(tmp_path / "work_dirs", tiny_model)
    res = cli("chat", str(run), "--prompt", "Hi")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    line = res.stderr.strip().splitlines()
    assert len(line) == 1 and "no model to chat with yet" in line[0] and f"tunewiz export {run}" in line[0]
    both = cli("chat", str(run), "--raw", "--chat")
    assert both.returncode == 2 and "not allowed with" in both.stderr


@pytest.mark.parametrize("extra, words", [
    (["--adapter", "MISSING"], ["adapter folder", "does not exist"]),
    (["--bits", "4"], ["CUDA"]),
])
def test_chat_bad_inputs_exit_1(cli, tiny_model, tmp_path, extra, words):
    import torch

    if "--bits" in extra and torch.cuda.is_available():
        pytest.skip("has CUDA")
    extra = [str(tmp_path / "missing") if a == "MISSING" else a for a in extra]
    res = cli("chat", str(tiny_model), "--prompt", "Hi", *extra)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    line = res.stderr.strip().splitlines()
    assert len(line) == 1 and all(w in line[0] for w in words), res.stderr


def test_chat_missing_model_exit_1(cli, tmp_path):
    res = cli("chat", str(tmp_path / "nowhere"), "--prompt", "Hi")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "does not exist" in res.stderr


def test_chat_refuses_full_model_as_adapter(cli, tiny_model):
    res = cli("chat", str(tiny_model), "--adapter", str(tiny_model), "--prompt", "Hi")
    assert res.returncode == 1 and "full model, not an adapter" in res.stderr
    assert json.loads((Path(tiny_model) / "config.json").read_text())  # untouched
