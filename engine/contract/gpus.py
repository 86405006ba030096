"""The GPUs this process may use, without torch: nvidia-smi's list, narrowed by CUDA_VISIBLE_DEVICES.

The wizard and the engine's planner both ask here, so they offer and use the same devices.
A GPU's id (what layout.gpus lists) is its nvidia-smi index, the number users see in
nvidia-smi. CUDA_VISIBLE_DEVICES is read the way CUDA reads it:

- unset: every GPU; set but empty: none;
- a comma-separated list of indices, `GPU-<uuid>` or `MIG-<uuid>` entries, where a uuid
  may be shortened to any prefix that names one device;
- the list ends at the first entry that names no device: CUDA ignores everything from
  there on, so this does too; a list that names one device twice leaves none visible
  (as CUDA does: torch then counts 0 devices).

Integer entries are matched to nvidia-smi's (PCI bus) order. Processes started for a plan
get the devices' uuids instead, which no device order can misread.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Mapping

QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total,memory.used", "--format=csv,noheader,nounits"]
LIST = ["nvidia-smi", "-L"]
# A few hundred MiB is the driver's own context; more means someone is using the GPU.
IN_USE_MIB = 512


@dataclass(frozen=True)
class Gpu:
    index: int              # nvidia-smi's index (a MIG instance has its GPU's)
    name: str
    memory_total_mib: int
    memory_used_mib: int
    uuid: str = ""          # GPU-... or MIG-...

    @property
    def memory_total_gib(self) -> float:
        return self.memory_total_mib / 1024

    @property
    def in_use(self) -> bool:
        return self.memory_used_mib > IN_USE_MIB

    @property
    def cuda_id(self) -> str:
        """This device as a CUDA_VISIBLE_DEVICES entry."""
        return self.uuid or str(self.index)


def parse_query(text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used` (csv, no header, no units)."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        # A name with a comma in it is the only field that can split: rejoin the middle.
        index, uuid, name, total, used = parts[0], parts[1], ", ".join(parts[2:-2]), parts[-2], parts[-1]
        try:
            gpus.append(Gpu(int(index), name, int(float(total)), _mib_or_zero(used), uuid))
        except ValueError:
            continue
    return gpus


def _mib_or_zero(value: str) -> int:
    # Some GPUs report "[N/A]" for used memory; a missing figure is not a busy GPU.
    try:
        return int(float(value))
    except ValueError:
        return 0


_GPU_LINE = re.compile(r"^GPU (\d+):")
_MIG_LINE = re.compile(r"^\s+MIG (\S+)\s+Device\s+\d+: \(UUID: (MIG-[^)\s]+)\)")


def parse_mig_list(text: str, gpus: list[Gpu]) -> list[Gpu]:
    """The MIG instances of `nvidia-smi -L`, each as a Gpu of its parent's index and name
    and of its profile's memory (1g.10gb: 10 GiB)."""
    by_index = {g.index: g for g in gpus}
    instances, parent = [], None
    for line in text.splitlines():
        if m := _GPU_LINE.match(line):
            parent = by_index.get(int(m.group(1)))
        elif (m := _MIG_LINE.match(line)) and parent is not None:
            profile, uuid = m.groups()
            size = re.search(r"(\d+)gb", profile)
            memory = int(size.group(1)) * 1024 if size else parent.memory_total_mib
            instances.append(Gpu(parent.index, f"{parent.name} MIG {profile}", memory, 0, uuid))
    return instances


def _run(argv: list[str], timeout: float) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def machine_gpus(timeout: float = 10.0) -> list[Gpu]:
    """Every GPU of the machine, in nvidia-smi's order; [] without a driver."""
    return parse_query(_run(QUERY, timeout) or "")


def select_visible(gpus: list[Gpu], cuda_visible: str | None, migs: list[Gpu] | None = None) -> list[Gpu]:
    """The devices a CUDA_VISIBLE_DEVICES value leaves visible, in its order."""
    if cuda_visible is None:
        return list(gpus)
    chosen: list[Gpu] = []
    for entry in cuda_visible.split(","):
        gpu = _device_named(entry.strip(), gpus, migs or [])
        if gpu is None:
            break
        if gpu in chosen:
            return []
        chosen.append(gpu)
    return chosen


def _device_named(entry: str, gpus: list[Gpu], migs: list[Gpu]) -> Gpu | None:
    if entry.isdigit():
        return next((g for g in gpus if g.index == int(entry)), None)
    pool = migs if entry.startswith("MIG-") else gpus if entry.startswith("GPU-") else []
    matches = [g for g in pool if g.uuid.lower().startswith(entry.lower())]
    return matches[0] if len(matches) == 1 else None   # an ambiguous prefix names nothing


def visible_gpus(env: Mapping[str, str] | None = None, timeout: float = 10.0) -> list[Gpu]:
    """The GPUs this process may use: the machine's, narrowed by CUDA_VISIBLE_DEVICES."""
    cuda_visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if cuda_visible is not None and not cuda_visible.strip():
        return []   # set but empty: no GPU, and no need to ask the driver
    gpus = machine_gpus(timeout)
    migs = None
    if gpus and cuda_visible and "MIG-" in cuda_visible:
        migs = parse_mig_list(_run(LIST, timeout) or "", gpus)
    return select_visible(gpus, cuda_visible, migs)
