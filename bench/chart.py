"""A PNG bar chart of bench_peers.py results: tokens/s per workload, tunewiz's defaults against the peers.

    python bench/chart.py results/results.jsonl -o docs/bench.png
    python bench/chart.py bench/results/bench-md-main-table.json -o docs/bench.png
    python bench/chart.py a/results.jsonl b/results.jsonl --sides tunewiz,tunewiz+compile=false,liger -o c.png

Each RESULTS file is what bench_peers.py writes (results.jsonl: one result per line), a
JSON list of such results, or a JSON object with a "results" list (and optionally a
"title"). A result needs "workload", "side" and "tokens_per_s"; "peak_gib" is shown when
there. Failed results are left out; when a workload and side appear twice, the later file
wins. Each bar carries its tokens/s and peak memory, and tunewiz's bars their ratio to the
workload's best peer. Needs matplotlib (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LABELS = {"tunewiz": "tunewiz defaults", "liger": "HF Trainer + peft + Liger", "hf": "HF Trainer + peft"}
TITLES = {"lora-b4": "LoRA\nbatch 4", "lora-b8": "LoRA\nbatch 8", "qlora-b8-ckpt": "QLoRA\nbatch 8, ckpt",
          "full-b4": "full\nbatch 4", "full-b16": "full\nbatch 16", "qlora7b-b1-ckpt": "7B QLoRA\nbatch 1, ckpt"}
PEERS = ("liger", "hf")


class ChartError(Exception):
    """Bad input: one line, naming the file (and line) and what to do."""


def read_results(path: Path) -> tuple[list[dict], str | None]:
    """(results, title) of one file: JSON lines, a JSON list, or {"results": [...], "title": ...}."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ChartError(f"{path}: cannot read it ({e.strerror})") from None
    title = None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ChartError(f"{path}:{n}: not JSON ({e.msg}); give bench_peers.py's results.jsonl") from None
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        rows, title = doc["results"], doc.get("title")
    elif isinstance(doc, list):
        rows = doc
    elif doc is not None:
        rows = [doc]  # a results.jsonl that holds a single line
    for n, r in enumerate(rows, 1):
        if not isinstance(r, dict) or not {"workload", "side"} <= r.keys():
            raise ChartError(f"{path}: result {n} has no \"workload\" and \"side\"; give bench_peers.py's results")
    return rows, title


def collect(paths: list[Path], sides: list[str]) -> tuple[list[str], list[str], dict, str | None]:
    """(workloads, sides, {(workload, side): result}, title) over every file, in file order."""
    found: dict[tuple[str, str], dict] = {}
    title = None
    for path in paths:
        rows, t = read_results(path)
        title = title or t
        for r in rows:
            if isinstance(r.get("tokens_per_s"), (int, float)) and r["side"] in sides:
                found[(r["workload"], r["side"])] = r
    if not found:
        raise ChartError(f"{', '.join(map(str, paths))}: no result with tokens_per_s for the sides "
                         f"{','.join(sides)}; check --sides")
    workloads = list(dict.fromkeys(w for w, _ in found))
    return workloads, [s for s in sides if any(k[1] == s for k in found)], found, title


def draw(paths: list[Path], out: Path, sides: list[str], title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: the chart only goes to a file
    import matplotlib.pyplot as plt

    workloads, sides, found, file_title = collect(paths, sides)
    width = 0.8 / len(sides)
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(workloads) + 1), 5), dpi=120)
    top = max(r["tokens_per_s"] for r in found.values())
    for i, side in enumerate(sides):
        for j, w in enumerate(workloads):
            r = found.get((w, side))
            if r is None:
                continue
            x = j + (i - (len(sides) - 1) / 2) * width
            ax.bar(x, r["tokens_per_s"], width, color=f"C{i}", label=LABELS.get(side, side) if j == 0 else None)
            text = f"{r['tokens_per_s'] / 1000:.1f}k"
            if isinstance(r.get("peak_gib"), (int, float)):
                text += f"\n{r['peak_gib']:.1f} GiB"
            peers = [found[(w, p)]["tokens_per_s"] for p in PEERS if (w, p) in found]
            if side.startswith("tunewiz") and peers:
                text += f"\n{r['tokens_per_s'] / max(peers):.2f}x"
            ax.text(x, r["tokens_per_s"] + top * 0.01, text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(workloads)), [TITLES.get(w, w) for w in workloads])
    ax.set_ylabel("tokens/s (wall clock)")
    ax.set_ylim(0, top * 1.3)
    ax.set_title(title or file_title or "tokens/s per workload", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise ChartError(f"{out}: cannot write it ({e.strerror}); give another -o") from None
    finally:
        plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="bench_peers.py results (JSON lines or JSON)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write")
    p.add_argument("--sides", default="tunewiz,liger,hf", help="sides to chart, in this order")
    p.add_argument("--title", help="the chart's title (default: the first file's \"title\")")
    args = p.parse_args(argv)
    try:
        collect(args.results, args.sides.split(","))  # bad input is named before anything is drawn
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ChartError("needs matplotlib: pip install -e '.[bench]'") from None
        draw(args.results, args.out, args.sides.split(","), args.title)
    except ChartError as e:
        print(f"chart: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
