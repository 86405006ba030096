"""DeepSpeed configs generated from the tunewiz config, never written by hand.

Batch, accumulation, clipping and precision come from ``train``; the ZeRO stage and
offload from ``layout.deepspeed``. Keeping one source means the global batch and the
loss curve match a single-GPU run of the same global batch.
"""

from __future__ import annotations


def deepspeed_config(cfg, world_size: int) -> dict:
    stage, offload = cfg.layout.zero_stage, cfg.layout.offloads
    t = cfg.train
    dtype = t.dtype if t.dtype != "auto" else _auto_dtype()
    zero: dict = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                  "reduce_bucket_size": 5e8, "allgather_bucket_size": 5e8}
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size=5e7, stage3_param_persistence_threshold=1e5,
                    stage3_gather_16bit_weights_on_model_save=False)
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config = {
        "train_micro_batch_size_per_gpu": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "train_batch_size": t.batch_size * t.grad_accum * world_size,
        "gradient_clipping": t.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == "bf16"},
        "fp16": {"enabled": dtype == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if offload:
        # Offloaded optimizer states need DeepSpeed's CPU Adam; same hyper-parameters.
        config["optimizer"] = {"type": "AdamW", "params": {"lr": t.lr, "betas": [0.9, 0.999], "eps": 1e-8,
                                                           "weight_decay": t.weight_decay}}
    return config


def _auto_dtype() -> str:
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
