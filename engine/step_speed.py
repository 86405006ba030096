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
- **FP8 matrix products for full fine-tuning** (`train.float8`; `auto`, the default, turns
  them on where the layers compile, torchao is installed and the GPU has FP8 tensor cores,
  compute capability 8.9 or later). The decoder layers' Linear products run in FP8 with
  one scale per tensor (torchao's "tensorwise" recipe); the output layer, the norms, the
  attention and the optimizer stay as they were. On one H200 (docs/bench.md) this took full
  fine-tuning from 0.98x to 1.13x HF + Liger at the same micro-batch, and 1.18x against
  the peer's best batch once auto_batch gave it 16 rows, at less memory, with a 200-step
  loss curve within 0.4% of the peer's. FP8 changes the rounding of the products, so LoRA and QLoRA,
  whose steps are not bound by the matrix products, keep bf16.
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


# FP8 matrix products (train.float8). Full fine-tuning's step is nearly all bf16 matrix
# products once the layers are compiled (docs/bench.md: about 48% MFU on an H200); torchao's
# float8 training runs them on the FP8 tensor cores with one scale per tensor. Uncompiled,
# its casts cost more than the products save (0.40x on an H200), so it needs compiled layers.
FLOAT8_CAPABILITY = (8, 9)   # Ada and Hopper: the first GPUs with FP8 tensor cores
FLOAT8_RECIPE = "tensorwise"  # 1.16x bf16 on an H200 where rowwise ran at 0.94x (bench/bench_fp8.py)


def should_float8(setting: bool | str, method: str, compiled: bool, capability: tuple[int, int] | None,
                  has_torchao: bool) -> tuple[bool, str]:
    """(FP8?, why not) for train.float8. The why-not is for the log: a warning when `true`
    asked for it, an info line when `auto` leaves a full fine-tuning run in bf16."""
    if not setting:
        return False, ""
    if method != "full":   # adapters: the frozen base's products are not what bounds the step
        return False, "FP8 applies to full fine-tuning only" if setting is True else ""
    if capability is None or capability < FLOAT8_CAPABILITY:
        return False, "FP8 needs a CUDA GPU of compute capability 8.9 or later"
    if not compiled:
        return False, "FP8 needs compiled layers (train.compile), or its casts cost more than it saves"
    if not has_torchao:
        return False, "torchao is not installed (pip install torchao, or `make setup` on a CUDA machine)"
    return True, ""


def float8_linears(model) -> int:
    """Swap the decoder layers' Linear modules for torchao's Float8Linear in place (before
    compiling them); returns how many. The output layer, embeddings and any Linear whose
    sizes FP8's products cannot take (not multiples of 16) stay as they are."""
    import torch
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    inside = set()
    for layer in model.modules():
        if type(layer).__name__.endswith("DecoderLayer"):
            inside.update(id(m) for m in layer.modules()
                          if isinstance(m, torch.nn.Linear) and m.in_features % 16 == 0 and m.out_features % 16 == 0)
    convert_to_float8_training(model, config=Float8LinearConfig.from_recipe_name(FLOAT8_RECIPE),
                               module_filter_fn=lambda module, fqn: id(module) in inside)
    return len(inside)
