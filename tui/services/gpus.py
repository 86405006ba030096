"""GPUs as nvidia-smi reports them: no torch, so the wizard opens instantly on any machine."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

QUERY = ["nvidia-smi", "--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_total_mib: int
    memory_used_mib: int

    @property
    def memory_total_gib(self) -> float:
        return self.memory_total_mib / 1024

    @property
    def in_use(self) -> bool:
        # A few hundred MiB is the driver's own context; more means someone is using it.
        return self.memory_used_mib > 512


def parse_nvidia_smi(text: str) -> list[Gpu]:
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            gpus.append(Gpu(int(parts[0]), parts[1], int(float(parts[2])), int(float(parts[3]))))
        except ValueError:
            continue
    return gpus


def detect_gpus(timeout: float = 5.0) -> list[Gpu]:
    """The machine's GPUs, or [] when there is no driver (CPU training)."""
    if shutil.which(QUERY[0]) is None:
        return []
    try:
        out = subprocess.run(QUERY, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else []
