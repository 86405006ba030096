"""Which sequences each rank trains on at each micro-step. Torch-free and stateless.

The plan is a pure function of (seed, epoch, step, micro-step, rank), so resuming at
step N needs no saved sampler state: every rank recomputes exactly where it was. The
token count of a whole optimizer step (all ranks, all micro-steps) is known up front,
which lets the loss be normalised per trained token without a collective.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass
class BatchPlan:
    n_seqs: int
    batch_size: int
    grad_accum: int
    world_size: int
    seed: int
    _orders: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def micro_per_epoch(self) -> int:
        return math.ceil(self.n_seqs / self.batch_size)

    @property
    def micro_per_step(self) -> int:
        return self.grad_accum * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.micro_per_epoch / self.micro_per_step))

    def total_steps(self, epochs: float, max_steps: int | None) -> int:
        if max_steps:
            return max_steps
        return max(1, math.ceil(epochs * self.steps_per_epoch))

    def _order(self, epoch: int) -> list[int]:
        """The epoch's shuffle, computed once (called for every micro-batch)."""
        if epoch not in self._orders:
            order = list(range(self.n_seqs))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._orders = {epoch: order}  # only the current epoch is ever needed again
        return self._orders[epoch]

    def micro_batch(self, step: int, micro: int, rank: int) -> list[int]:
        """Sequence indices for (optimizer step, micro-step, rank). Epochs wrap around;
        the tail of an epoch that does not fill a step continues into the next epoch."""
        g = (step * self.micro_per_step) + micro * self.world_size + rank
        epoch, pos = divmod(g, self.steps_per_epoch * self.micro_per_step)
        order = self._order(epoch)
        start = (pos % self.micro_per_epoch) * self.batch_size
        return order[start:start + self.batch_size]

    def step_batches(self, step: int) -> list[list[list[int]]]:
        """[rank][micro] -> sequence indices, for every rank of one optimizer step."""
        return [[self.micro_batch(step, m, r) for m in range(self.grad_accum)] for r in range(self.world_size)]

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch
