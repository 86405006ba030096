"""How one optimizer step runs: one process, DDP, or DeepSpeed ZeRO.

The recipe in train.py is the same for all three; a backend owns what differs: wrapping
the model, backward / step, saving and restoring training state, and which ranks take
part in generation. Only rank 0 writes files that every rank could write.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from . import checkpoint

from .contract import faults
from .runtime import Runtime


def training_loss(model, fused: bool):
    """A module whose forward(batch, num_items) is the training loss, so DDP can wrap the
    whole computation: with `fused`, from the last hidden states (fused_loss.py), else the
    model's own loss."""
    import torch

    from . import fused_loss

    class TrainingLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, batch: dict, num_items):
            if fused:
                return fused_loss.shifted_loss(self.model, batch, num_items)
            # Keep only the loss: holding the output would keep the whole logits tensor
            # alive through the next forward and the optimizer step.
            return self.model(**batch, num_items_in_batch=num_items).loss

    return TrainingLoss()


class SingleBackend:
    """One process (also the base for DDP): plain torch optimizer, scheduler and clipping."""

    sharded = False

    def __init__(self, model, optimizer, scheduler, cfg, rt: Runtime, fused_loss: bool = False):
        self.optimizer, self.scheduler, self.cfg, self.rt = optimizer, scheduler, cfg, rt
        self._raw = model
        self.model = training_loss(model, fused_loss)
        self.trainable = [p for p in model.parameters() if p.requires_grad]

    @property
    def module(self):
        """The peft / HF model itself (for generation and save_pretrained)."""
        return self._raw

    def micro_context(self, last: bool):
        return contextlib.nullcontext()

    def loss(self, batch: dict, num_items):
        """This micro-batch's share of the step's loss (summed over its trained tokens and
        divided by the whole step's count, num_items)."""
        return self.model(batch, num_items)

    def backward(self, loss) -> None:
        loss.backward()
        faults.point("step.backward")

    def step(self):
        """The optimizer step after the last micro-step; returns the gradient norm."""
        import torch

        norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.train.max_grad_norm)
        self.optimizer.step()
        faults.point("step.optimizer")
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def generates(self) -> bool:
        """Whether this rank runs the eval prompts (all ranks must when weights are sharded)."""
        return self.rt.is_main

    def save(self, tmp: Path) -> None:
        """Write training state into tmp (every rank calls this)."""
        if self.rt.is_main:
            self.module.save_pretrained(tmp, safe_serialization=True)
            faults.point("ckpt.weights")
            checkpoint.save_state(self.optimizer.state_dict(), tmp / "optimizer.pt")
            faults.point("ckpt.optimizer")
            checkpoint.save_state(self.scheduler.state_dict(), tmp / "scheduler.pt")
        checkpoint.save_rng(tmp, self.rt.rank)

    def load(self, ckpt: Path) -> None:
        checkpoint.load_weights(ckpt, self.module, self.cfg.method)
        # weights_only: plain tensors and containers, never code from the run directory
        self.optimizer.load_state_dict(checkpoint.load_state(ckpt / "optimizer.pt", map_location="cpu"))
        self.scheduler.load_state_dict(checkpoint.load_state(ckpt / "scheduler.pt"))
        checkpoint.load_rng(ckpt, self.rt.rank)


class DDPBackend(SingleBackend):
    """Data parallel over NCCL (GPU) or gloo (CPU); gradients sync on the last micro-step only."""

    def __init__(self, model, optimizer, scheduler, cfg, rt: Runtime, fused_loss: bool = False):
        from torch.nn.parallel import DistributedDataParallel

        super().__init__(model, optimizer, scheduler, cfg, rt, fused_loss)
        ids = [rt.local_rank] if rt.device.startswith("cuda") else None
        self.model = DistributedDataParallel(self.model, device_ids=ids)

    def micro_context(self, last: bool):
        return contextlib.nullcontext() if last else self.model.no_sync()


class DeepSpeedBackend:
    """ZeRO-1/2/3 (optionally offloaded). DeepSpeed owns clipping, precision and sharding."""

    def __init__(self, model, optimizer, make_scheduler, cfg, rt: Runtime, ds_config: dict):
        import deepspeed

        self.cfg, self.rt, self.ds_config = cfg, rt, ds_config
        self.stage = ds_config["zero_optimization"]["stage"]
        self.sharded = self.stage == 3
        trainable = [p for p in model.parameters() if p.requires_grad]
        # Offload needs DeepSpeed's own CPU Adam, so the config names the optimizer then.
        client_opt = None if "optimizer" in ds_config else optimizer
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=trainable, optimizer=client_opt, lr_scheduler=make_scheduler,
            config=ds_config)
        self.model = self.engine

    @property
    def module(self):
        return self.engine.module

    def micro_context(self, last: bool):
        return contextlib.nullcontext()

    def loss(self, batch: dict, num_items):
        return self.engine(**batch, num_items_in_batch=num_items).loss

    def backward(self, loss) -> None:
        # DeepSpeed divides by gradient_accumulation_steps itself; the recipe has already
        # normalised by the whole step's trained tokens, so undo that division. Its step()
        # runs after every micro-step and only updates at the accumulation boundary.
        self.engine.backward(loss * self.cfg.train.grad_accum)
        self.engine.step()

    def step(self):
        import torch

        norm = self.engine.get_global_grad_norm()
        return torch.tensor(float(norm) if norm is not None else 0.0)

    def lr(self) -> float:
        return self.engine.get_lr()[0]

    def generates(self) -> bool:
        return True if self.sharded else self.rt.is_main

    def save(self, tmp: Path) -> None:
        self.engine.save_checkpoint(str(tmp / "ds"), tag="state")
        if not self.sharded and self.rt.is_main:
            # ZeRO-1/2 keep whole weights on every rank: save them in HF form right away.
            self.module.save_pretrained(tmp, safe_serialization=True)
        if self.rt.is_main:
            (tmp / "zero.json").write_text(json.dumps({"stage": self.stage, "tag": "state"}))
        checkpoint.save_rng(tmp, self.rt.rank)

    def load(self, ckpt: Path) -> None:
        checkpoint.check_no_code(ckpt / "ds")  # DeepSpeed unpickles in full: vet its files first
        self.engine.load_checkpoint(str(ckpt / "ds"), tag="state", load_optimizer_states=True,
                                    load_lr_scheduler_states=True)
        checkpoint.load_rng(ckpt, self.rt.rank)


def make_backend(model, optimizer, make_scheduler, cfg, rt: Runtime, fused_loss: bool = False):
    """make_scheduler(optimizer) builds the lr schedule (DeepSpeed may own the optimizer).
    DeepSpeed always runs the model's own loss: ZeRO-3 gathers the output layer's weight
    only inside that layer's forward."""
    if cfg.layout.uses_deepspeed:
        from .deepspeed_config import deepspeed_config

        return DeepSpeedBackend(model, optimizer, make_scheduler, cfg, rt, deepspeed_config(cfg, rt.world_size))
    if rt.distributed:
        return DDPBackend(model, optimizer, make_scheduler(optimizer), cfg, rt, fused_loss)
    return SingleBackend(model, optimizer, make_scheduler(optimizer), cfg, rt, fused_loss)
