"""The GPUs the wizard offers: the engine's own torch-free detection (contract.gpus), so the
wizard lists exactly the devices a launch would use, CUDA_VISIBLE_DEVICES included."""

from __future__ import annotations

from tunewiz.engine.contract.gpus import Gpu, visible_gpus

__all__ = ["Gpu", "detect_gpus"]


def detect_gpus(timeout: float = 5.0) -> list[Gpu]:
    """The GPUs this machine lets a run use, or [] when there is none (CPU training)."""
    return visible_gpus(timeout=timeout)
