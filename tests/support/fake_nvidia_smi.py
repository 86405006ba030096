"""An nvidia-smi for PATH that does (`nvidia-smi -L` lists one GPU) or does not answer like a
GPU machine's, for tests of what `make` and the suite do on one."""

from __future__ import annotations

from pathlib import Path


def fake_nvidia_smi(bin_dir: Path, lists_a_gpu: bool = True) -> Path:
    """Writes bin_dir/nvidia-smi and returns bin_dir (to put first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n" if lists_a_gpu else "#!/bin/sh\nexit 9\n")
    smi.chmod(0o755)
    return bin_dir
