"""A profile table from bench/profile_hook (or bench_fp8.py --profile), summed by kind of work.

    python bench/profile_summary.py prof.1187.txt prof.2508.txt

Kernels are grouped by name: FP8 and bf16 matrix products (cuBLAS), attention, 4-bit
dequantization, optimizer, compiled elementwise work (Triton), Liger's kernels, the loss's
softmax, fp32 additions, copies and casts, dropout, other eager elementwise work, and the rest. Figures are milliseconds of GPU time per profiled
optimizer step and the share of the table's total; "unlisted" is what the table's top rows
leave out.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# (group, test on the kernel name), first match wins
GROUPS = [
    ("FP8 matrix products", lambda n: n.startswith("nvjet") and re.search(r"_q[qr]tst_", n)),
    ("bf16 matrix products", lambda n: n.startswith(("nvjet", "cutlass", "sm90_xmma", "ampere_")) or "gemm" in n.lower()
     or "splitKreduce" in n),
    ("attention", lambda n: "sdpa" in n or "fmha" in n or "flash" in n.lower() or "compute_dot_do_o" in n
     or "convert_dq" in n),
    ("4-bit dequantization", lambda n: "Dequantize" in n),
    ("optimizer (fused AdamW)", lambda n: "multi_tensor_apply" in n),
    ("compiled elementwise (Triton)", lambda n: n.startswith("triton_")),
    ("Liger kernels", lambda n: (n.startswith("_") and n.endswith("_kernel")) or n.startswith(("_triton", "liger"))
     or n == "element_mul_kernel"),
    ("softmax (loss)", lambda n: "SoftMax" in n),
    ("fp32 additions", lambda n: "CUDAFunctor_add<float>" in n),
    ("copies and casts", lambda n: "copy" in n.lower() or "Memcpy" in n),
    ("dropout", lambda n: "dropout" in n.lower() or "masked_scale" in n),
    ("eager elementwise (PyTorch)", lambda n: "elementwise_kernel" in n),
]
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse(path: Path) -> tuple[int, list[tuple[str, float]], float]:
    """(profiled steps, [(kernel, self GPU ms)], the table's GPU total in ms)."""
    text = path.read_text()
    steps = int(m.group(1)) if (m := re.search(r"^(\d+) optimizer steps", text, re.M)) else 1
    total = re.search(r"Self CUDA time total: ([\d.]+)(us|ms|s)", text)
    if not total:
        raise SystemExit(f"{path}: no 'Self CUDA time total' line: not a GPU profile table")
    rows = []
    for line in text.splitlines():
        fields = re.split(r"\s{2,}", line.strip())
        if len(fields) < 8 or fields[0] in ("Name",) or set(fields[0]) <= {"-"}:
            continue
        value = re.fullmatch(r"([\d.]+)(us|ms|s)", fields[6])
        if value:
            rows.append((fields[0], float(value.group(1)) * UNITS[value.group(2)]))
    return steps, rows, float(total.group(1)) * UNITS[total.group(2)]


def summary(path: Path) -> list[tuple[str, float, float]]:
    steps, rows, total = parse(path)
    sums: dict[str, float] = {}
    for name, ms in rows:
        group = next((g for g, test in GROUPS if test(name)), "other")
        sums[group] = sums.get(group, 0.0) + ms
    sums["unlisted"] = max(0.0, total - sum(ms for _, ms in rows))
    out = [(g, ms / steps, 100 * ms / total) for g, ms in sorted(sums.items(), key=lambda kv: -kv[1]) if ms > 0]
    return out + [("total", total / steps, 100.0)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profiles", nargs="+", type=Path)
    args = p.parse_args(argv)
    for path in args.profiles:
        print(f"{path.name}: GPU ms per optimizer step")
        for group, ms, share in summary(path):
            print(f"  {group:<32}{ms:9.1f}{share:7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
