"""The fused loss's memory: the most its forward pass has alive at once, counted op by op
on the meta device (bench/live_bytes.py), so a 92k vocabulary costs no compute and no GPU.

    python bench/bench_loss_memory.py                      # as a GPU runs it
    python bench/bench_loss_memory.py --softmax as-is      # as the CPU / meta kernels run it
    python bench/bench_loss_memory.py --module OLD.py      # another version of engine/fused_loss.py

Workloads are the loss's inputs in the peer benchmark's rows (2,048 tokens each, every one a
trained target): 7B QLoRA batch 1 and 1.8B LoRA batch 8 (frozen output layer), 1.8B full
fine-tuning batch 4 (trained output layer). `--softmax cuda` counts softmax(bf16 logits,
dtype=float32) as CUDA runs it, one fp32 output and no converted copy of its input; the
CPU and meta kernels convert first, one fp32 chunk more. The count is the loss's own
tensors: a kernel's private workspace is not in it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from live_bytes import LiveBytes  # noqa: E402

VOCAB = 92544
# name -> (hidden size, loss rows, output layer trains)
WORKLOADS = {
    "7B QLoRA batch 1": (4096, 2048, False),
    "1.8B LoRA batch 8": (2048, 16384, False),
    "1.8B full batch 4": (2048, 8192, True),
}


def fused_loss_module(path: str | None):
    if path is None:
        from tunewiz.engine import fused_loss
        return fused_loss
    spec = importlib.util.spec_from_file_location("fused_loss_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loss_forward_peak(module, hidden_size: int, rows: int, head_trains: bool) -> int:
    """Bytes: the most the loss's forward pass holds at once, beyond its inputs."""
    import torch

    hidden = torch.empty(rows, hidden_size, dtype=torch.bfloat16, device="meta", requires_grad=True)
    weight = torch.empty(VOCAB, hidden_size, dtype=torch.bfloat16, device="meta", requires_grad=head_trains)
    targets = torch.zeros(rows, dtype=torch.long, device="meta")
    counted = LiveBytes(already_there=(hidden, weight, targets))
    with counted:
        module.LinearCrossEntropy.apply(hidden, weight, targets, rows, torch.bfloat16)
    return counted.peak


@contextlib.contextmanager
def on_meta(softmax: str):
    """The meta device has no autocast; `cuda` also swaps in CUDA's bf16-to-fp32 softmax."""
    import torch

    autocast, plain_softmax = torch.autocast, torch.softmax
    torch.autocast = lambda *a, **k: contextlib.nullcontext()

    def cuda_softmax(x, dim, dtype=None):
        if x.dtype == torch.bfloat16 and dtype == torch.float32:
            return torch._softmax(x, dim, True)          # half_to_float: what CUDA's kernel does
        return plain_softmax(x, dim, dtype=dtype)

    if softmax == "cuda":
        torch.softmax = cuda_softmax
    try:
        yield
    finally:
        torch.autocast, torch.softmax = autocast, plain_softmax


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--softmax", choices=("cuda", "as-is"), default="cuda")
    p.add_argument("--module", metavar="FUSED_LOSS_PY", help="count this engine/fused_loss.py instead")
    args = p.parse_args(argv)
    module = fused_loss_module(args.module)
    print(f"{'workload':<20}{'loss forward peak MiB':>24}")
    with on_meta(args.softmax):
        for name, shape in WORKLOADS.items():
            print(f"{name:<20}{loss_forward_peak(module, *shape) / 2**20:>24,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
