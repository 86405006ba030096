"""A PNG bar chart of a bench_peers.py results file: tokens/s per workload, one bar per side.

    python bench/chart_peers.py docs/bench-peers-h200.jsonl docs/bench-peers-h200.png

Needs matplotlib (not a tunewiz dependency). Each bar is labelled with its tokens/s and
peak memory; tunewiz's bars also carry their ratio to the best peer of the workload.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = {"tunewiz": "tunewiz defaults", "liger": "HF Trainer + peft + Liger", "hf": "HF Trainer + peft"}
TITLES = {"lora-b4": "LoRA, batch 4", "lora-b8": "LoRA, batch 8", "qlora-b8-ckpt": "QLoRA, batch 8, ckpt",
          "full-b4": "full, batch 4"}


def main(results: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(results).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "tokens_per_s" in r]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    sides = list(dict.fromkeys(r["side"] for r in rows))
    width = 0.8 / len(sides)
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    for i, side in enumerate(sides):
        for j, w in enumerate(workloads):
            r = next((r for r in rows if r["workload"] == w and r["side"] == side), None)
            if r is None:
                continue
            x = j + (i - (len(sides) - 1) / 2) * width
            ax.bar(x, r["tokens_per_s"], width, color=f"C{i}", label=LABELS.get(side, side) if j == 0 else None)
            text = f"{r['tokens_per_s'] / 1000:.1f}k\n{r['peak_gib']:.1f} GiB"
            peers = [p["tokens_per_s"] for p in rows if p["workload"] == w and p["side"] in ("liger", "hf")]
            if side.startswith("tunewiz") and peers:
                text += f"\n{r['tokens_per_s'] / max(peers):.2f}x"
            ax.text(x, r["tokens_per_s"], text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(workloads)), [TITLES.get(w, w) for w in workloads])
    ax.set_ylabel("tokens/s (wall clock)")
    ax.set_ylim(0, max(r["tokens_per_s"] for r in rows) * 1.25)
    ax.set_title("InternLM2-1.8B shape, 2,048-token rows, bf16, one H200 (one device call)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
