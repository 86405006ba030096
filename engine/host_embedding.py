"""train.host_embedding: an adapter run's frozen input embedding table in host memory.

Which runs do this is contract/embedding_placement.py's rule. Here the table moves: the
model's nn.Embedding is replaced by a HostEmbedding holding the same tensor on the CPU. The
training loop looks its batch's tokens up on the CPU, where the batch is built, and sends
the rows to the GPU with the rest of the batch (engine/train.py), so the lookup adds no
device sync and overlaps the previous micro-step. Anything else that calls the embedding
with token ids on the GPU (the eval answers' generate) gets the same rows, at the cost of
copying the ids to the host.
"""

from __future__ import annotations

import torch
from torch import nn


class HostEmbedding(nn.Module):
    """A frozen nn.Embedding whose table lives in host memory. The table is a plain
    attribute, neither parameter nor buffer: model.parameters(), model.device, DDP and the
    optimizer see only what is on the GPU, and nothing saves it (an adapter run saves its
    adapter; merge and chat load the base model from its folder)."""

    def __init__(self, embedding: nn.Embedding, device: torch.device | str):
        super().__init__()
        self.table = embedding.weight.detach().to("cpu").contiguous()
        self.num_embeddings, self.embedding_dim = self.table.shape
        self.padding_idx = embedding.padding_idx
        self.target = torch.device(device)
        # Page-locked rows let the copy to a GPU run without blocking; decided once, not per batch.
        self.pin = self.target.type == "cuda" and torch.cuda.is_available()

    @property
    def weight(self) -> torch.Tensor:
        """The table, for code that reads an embedding's dtype or shape."""
        return self.table

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """The rows of CPU token ids, on the CPU, in page-locked memory where a GPU waits for
        them (so the copy to it can run without blocking)."""
        rows = torch.empty((ids.numel(), self.embedding_dim), dtype=self.table.dtype, pin_memory=self.pin)
        torch.index_select(self.table, 0, ids.reshape(-1), out=rows)
        return rows.view(*ids.shape, self.embedding_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        device = ids.device if ids.device.type != "cpu" else self.target
        return self.lookup(ids.cpu()).to(device, non_blocking=True)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, in host memory"


def tied(model) -> bool:
    """The input table is the output layer's weight (a tied model): it must stay on the GPU."""
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    return out is not None and getattr(out, "weight", None) is not None and \
        out.weight.data_ptr() == emb.weight.data_ptr()


def movable(model) -> bool:
    """A plain, frozen nn.Embedding (not a LoRA-wrapped or scaled subclass, no max_norm)."""
    emb = model.get_input_embeddings()
    return type(emb) is nn.Embedding and not emb.weight.requires_grad and emb.max_norm is None


def keep_on_host(model, device) -> HostEmbedding:
    """Move model's input embedding table to host memory; returns the new module."""
    host = HostEmbedding(model.get_input_embeddings(), device)
    model.set_input_embeddings(host)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()   # the GPU copy's memory goes back to the device
    return host
