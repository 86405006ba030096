"""A rough memory estimate for the review step: per GPU, or of RAM when training runs on
the CPU (fp32 there). Rough on purpose: it tells a user whether a plan is in the right
ballpark (2 GiB vs 80 GiB), not the exact peak."""

from __future__ import annotations

from dataclasses import dataclass

from tunewiz.engine.contract.config import Config
from tunewiz.engine.contract.model_facts import ModelFacts

GIB = 1024**3
# Bytes per base-model parameter: weights + grads + AdamW states (full: bf16 weights and
# grads, fp32 master + two moments); LoRA keeps frozen bf16 weights; QLoRA packs 4-bit.
BYTES_PER_PARAM = {"full": 16.0, "lora": 2.0, "qlora": 0.55}
# How ZeRO stages divide the full-fine-tuning states across GPUs (fraction that shards).
ZERO_SHARDED = {"zero1": 12 / 16, "zero2": 14 / 16, "zero3": 1.0,
                "zero2_offload": 14 / 16, "zero3_offload": 1.0}


@dataclass
class MemoryEstimate:
    weights_gib: float
    adapters_gib: float
    activations_gib: float
    on_cpu: bool = False

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.adapters_gib + self.activations_gib

    def describe(self) -> str:
        where = "of RAM (CPU training, fp32)" if self.on_cpu else "per GPU"
        return (f"≈ {self.total_gib:.1f} GiB {where} (rough): model+optimizer {self.weights_gib:.1f}, "
                f"adapters {self.adapters_gib:.2f}, activations {self.activations_gib:.1f}")


def lora_params(facts: ModelFacts, r: int) -> int:
    """LoRA on every linear layer: r x (in + out) per projection, 7 projections per layer."""
    h, inter = facts.hidden, facts.intermediate or 4 * facts.hidden
    per_layer = r * ((h + h) * 4 + (h + inter) * 3)
    return facts.layers * per_layer


def estimate_memory(cfg: Config, facts: ModelFacts, n_gpus: int) -> MemoryEstimate | None:
    """n_gpus 0 means CPU training: fp32 frozen weights and activations, in RAM."""
    if not facts.params or not facts.hidden or not facts.layers:
        return None
    on_cpu = n_gpus == 0
    weights = facts.params * (4.0 if on_cpu and cfg.method != "full" else BYTES_PER_PARAM[cfg.method])
    stage = cfg.layout.deepspeed
    if n_gpus > 1 and stage in ZERO_SHARDED:
        if cfg.method == "full":
            sharded = weights * ZERO_SHARDED[stage]
            weights = weights - sharded + sharded / n_gpus
        elif stage.startswith("zero3"):
            weights /= n_gpus
    adapters = 0.0
    if cfg.method != "full":
        # adapter weights in fp32 + grads + two AdamW moments
        adapters = lora_params(facts, cfg.lora.r) * 16
    tokens = cfg.train.batch_size * cfg.data.max_length
    # per token per layer: ~34 x hidden bytes without recomputation (bf16 activations of
    # attention + MLP), ~2 x hidden with gradient checkpointing (only layer inputs kept);
    # plus the logits in fp32, which dominate for big vocabularies.
    per_layer = (2 if cfg.train.gradient_checkpointing else 34) * facts.hidden
    activations = tokens * (facts.layers * per_layer * (2 if on_cpu else 1) + facts.vocab * 4 * 2)
    return MemoryEstimate(weights / GIB, adapters / GIB, activations / GIB, on_cpu)
