"""Settings that make a training step cheaper without changing what it computes.

The step of a LoRA run on a GPU is bound by Python and kernel launches, not by the GPU:
on the 1.8B shape at batch 1 the profiler shows about 4x more host time than device time.
Two things cut that:

- **No input copy per adapter.** peft's LoRA layer casts its input to the adapter's dtype
  (fp32) before the adapter matmuls; under bf16 autocast the matmul casts it straight back.
  That is two full copies of the activations per adapted layer for nothing; with autocast
  on, the adapters take the bf16 input as it is (the matmul sees the same bf16 values).
- **Compiled layers** (`train.compile`; `auto`, the default, compiles one-process CUDA
  runs without DeepSpeed; it costs about 30 s up front). Each decoder layer is compiled by torch.compile
  ("regional" compilation: one graph, shared by every layer), which fuses the elementwise
  work around the matmuls and removes most launches. Batches keep one shape (train.py
  pads an epoch's short last batch) so nothing recompiles mid-run. Measured on one H200
  (docs/bench.md, full 2,048-token rows): 1.44x the uncompiled tokens/s for LoRA at batch 4,
  1.39x at batch 8, 2.0x for QLoRA at batch 8 with checkpointing, 1.27x for full training
  at batch 4, each at lower peak memory (the compiler saves fewer activations), with the
  same losses. Several processes (DDP) are not yet measured, so `auto` leaves them
  uncompiled; `true` compiles them too. A layer that fails to compile
  runs uncompiled instead of failing the run. Generation (eval answers) runs the same
  layers uncompiled.
"""

from __future__ import annotations

import contextlib


def should_compile(setting: bool | str, device: str, deepspeed: str, world_size: int = 1) -> tuple[bool, str]:
    """(compile?, why not) for train.compile; why-not is said only when `true` asked for it.
    `auto` compiles where it was measured to win: one CUDA process without DeepSpeed."""
    if not setting:
        return False, ""
    if not device.startswith("cuda") or deepspeed != "none":
        return False, "compiling applies to CUDA runs without DeepSpeed" if setting is True else ""
    if setting == "auto" and world_size > 1:
        return False, ""   # not yet measured with several processes: `true` asks for it
    return True, ""


def auto_skips(device: str, deepspeed: str, world_size: int) -> str:
    """Why `auto` leaves a CUDA run uncompiled, for its log; "" where it compiles, and on the
    CPU, where compiling was never meant to help."""
    if not device.startswith("cuda"):
        return ""
    if deepspeed != "none":
        return "DeepSpeed's parameter hooks do not compile (train.compile: true cannot either)"
    if world_size > 1:
        return ("compiled layers are not yet measured with several processes; "
                "train.compile: true compiles them")
    return ""


def skip_adapter_input_casts(model) -> int:
    """Only for autocast runs: the adapters then compute in the autocast dtype anyway."""
    n = 0
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled") and hasattr(module, "lora_A"):
            module.cast_input_dtype_enabled = False
            n += 1
    return n


def compile_layers(model) -> int:
    """Compile every decoder layer in place; returns how many."""
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True   # a frame that cannot compile runs eagerly
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    for layer in layers:
        layer.compile()
    return len(layers)


def eager():
    """Run compiled modules uncompiled inside this block (generation: other shapes, a KV
    cache, one token at a time: compiling those would cost more than it saves)."""
    import torch

    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance else contextlib.nullcontext()
