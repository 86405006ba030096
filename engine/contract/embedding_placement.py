"""Where the input embedding table lives during training: the one rule that the run
(engine/host_embedding.py), the memory estimate and the dry run share.

An adapter run never trains the input embedding; it only looks tokens up in it, a gather of
batch x seq rows. Kept in host memory, the lookup runs on the CPU and only the looked-up
rows (batch x seq x hidden) cross to the GPU, so the table's vocab x hidden x 2 bytes leave
the GPU: 0.7 GiB of a 7B InternLM2, 1 GiB of Llama 3 8B, 0.37 GiB of the 1.8B shape.
Nothing is computed differently: the same rows, the same values.
"""

from __future__ import annotations

from .config import Config


def why_embedding_stays_on_gpu(cfg: Config, on_cuda: bool, tied: bool) -> str | None:
    """None when this run keeps its input embedding table in host memory, else why not
    (for the log; '' where that is simply the default, as on a CPU)."""
    if not on_cuda:
        return ""
    if not cfg.train.host_embedding:
        return "train.host_embedding is false"
    if not cfg.uses_adapter:
        return "full fine-tuning trains the embedding"
    if cfg.layout.uses_deepspeed:
        return "DeepSpeed places every weight itself"
    if tied:
        return "the table is shared with the output layer (tied embeddings)"
    return None
