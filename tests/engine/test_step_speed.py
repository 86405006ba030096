"""The step-speed settings change how fast a step runs, never what it computes."""

from __future__ import annotations

import pytest

from tunewiz.engine.step_speed import should_compile, should_float8


@pytest.mark.parametrize("setting, device, deepspeed, world, expected", [
    (True, "cuda:0", "none", 1, True),
    (True, "cuda:0", "none", 2, True),       # asked for by name
    (True, "cuda:0", "zero2", 1, False),     # DeepSpeed's parameter hooks
    (True, "cpu", "none", 1, False),
    (False, "cuda:0", "none", 1, False),
    ("auto", "cuda:0", "none", 1, True),     # the default: measured faster on one GPU
    ("auto", "cuda:0", "none", 2, False),    # not measured with several processes
    ("auto", "cuda:0", "zero2", 1, False),
    ("auto", "cpu", "none", 1, False),       # CPU runs stay as they were
])
def test_when_layers_are_compiled(setting, device, deepspeed, world, expected):
    on, why_not = should_compile(setting, device, deepspeed, world)
    assert on is expected
    # Only an explicit `true` that cannot be honoured is worth a warning.
    assert ("CUDA" in why_not) == (setting is True and not on)


@pytest.mark.parametrize("key, bad", [("compile", "fast"), ("float8", "e4m3")])
def test_speed_switches_default_to_auto_and_take_only_auto_true_false(key, bad):
    from tunewiz.engine.contract.config import Config, config_from_dict
    from tunewiz.engine.contract.errors import ConfigError

    assert getattr(Config().train, key) == "auto"
    for value in ("auto", True, False):
        assert getattr(config_from_dict({"train": {key: value}}).train, key) == value
    with pytest.raises(ConfigError, match=f"train.{key}: '{bad}' is not one of auto, true, false"):
        config_from_dict({"train": {key: bad}})


H200, ADA, A100 = (9, 0), (8, 9), (8, 0)


@pytest.mark.parametrize("setting, method, compiled, capability, torchao, expected, says", [
    ("auto", "full", True, H200, True, True, ""),          # the default where it was measured
    ("auto", "full", True, ADA, True, True, ""),
    ("auto", "lora", True, H200, True, False, ""),         # adapters keep bf16, quietly
    ("auto", "qlora", True, H200, True, False, ""),
    ("auto", "full", True, A100, True, False, "8.9"),      # no FP8 tensor cores
    ("auto", "full", False, H200, True, False, "compiled"),
    ("auto", "full", True, H200, False, False, "torchao"),
    ("auto", "full", True, None, True, False, "CUDA"),     # a CPU run
    (True, "full", True, H200, True, True, ""),
    (True, "lora", True, H200, True, False, "full fine-tuning"),
    (True, "full", True, A100, True, False, "8.9"),
    (False, "full", True, H200, True, False, ""),
])
def test_when_products_run_in_fp8(setting, method, compiled, capability, torchao, expected, says):
    on, why_not = should_float8(setting, method, compiled, capability, torchao)
    assert on is expected
    assert (says in why_not) if says else why_not == ""


def test_adapters_without_input_casts_compute_the_same_under_autocast(tiny_model):
    """bf16 autocast (on the CPU here, as on a GPU): the adapter matmuls see the same
    bf16 input whether or not peft first copies it to fp32."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunewiz.engine.step_speed import skip_adapter_input_casts

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False,
                                            lora_dropout=0.0))
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()          # fp32 adapters on a bf16 base, as training keeps them
    ids = torch.tensor([[1, 5, 9, 20, 33, 40, 7]])

    def run():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    loss_cast, grads_cast = run()
    n = skip_adapter_input_casts(model)
    assert n == 2 * 7                         # every adapted linear layer of the two blocks
    loss_plain, grads_plain = run()
    assert loss_plain == loss_cast
    for a, b in zip(grads_plain, grads_cast):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_memory_pressure_is_reported_once_when_the_allocator_starts_retrying():
    from tunewiz.engine.train import MemoryPressure

    watch = MemoryPressure()
    assert watch.check(1, lambda: 0) is None and watch.check(2, lambda: 0) is None
    message = watch.check(3, lambda: 2)
    assert "by step 3" in message and "2 time(s)" in message and "train.batch_size" in message
    assert watch.check(4, lambda: 5) is None  # one warning per run, not one per step
