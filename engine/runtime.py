"""Where this process runs: device, rank and world size, read from torchrun's environment.

One process on one device is the world of size 1; under torchrun every rank builds the
same Runtime from RANK / WORLD_SIZE / LOCAL_RANK, and only rank 0 writes events.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Runtime:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> "Runtime":
        """Rank and world from the environment; torch-free so checks can run before it loads."""
        return cls(rank=int(os.environ.get("RANK", 0)), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                   world_size=int(os.environ.get("WORLD_SIZE", 1)))

    def select_device(self) -> str:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            self.device = f"cuda:{self.local_rank}"
        else:
            self.device = "cpu"
        return self.device

    def peak_memory_gib(self) -> float:
        """Peak accelerator memory, or the process's peak resident memory on the CPU."""
        import torch

        if self.device.startswith("cuda"):
            return torch.cuda.max_memory_allocated() / 2**30
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def alloc_retries(self) -> int:
        """How often the CUDA caching allocator has run dry, freed its cache and retried
        (0 on the CPU). Each retry synchronises the device, so a count that keeps rising
        means every step runs at the edge of memory and loses much of its speed."""
        import torch

        if self.device.startswith("cuda"):
            return int(torch.cuda.memory_stats(self.device).get("num_alloc_retries", 0))
        return 0

    # ---------------------------------------------------------------- collectives
    def init_distributed(self, timeout_s: int, deepspeed: bool = False) -> None:
        """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs). With
        DeepSpeed its own comm layer must know the world too, before ZeRO-3 partitions
        the weights at load time."""
        if not self.distributed:
            return
        from datetime import timedelta

        import torch.distributed as dist

        backend = "nccl" if self.device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        if deepspeed:
            import deepspeed as ds

            ds.init_distributed(dist_backend=backend)  # adopts the group made above

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, tensor):
        """All-reduce (sum) in place across ranks; a no-op for one process."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj):
        """Rank 0's value of a small picklable object, on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, value: int) -> int:
        """Rank 0's integer on every rank, through one small tensor broadcast (cheap enough
        to run once per generated token, unlike pickling an object)."""
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        box = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.broadcast(box, src=0)
        return int(box.item())

    def shutdown(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
