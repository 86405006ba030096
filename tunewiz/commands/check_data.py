"""`tunewiz check-data SOURCE...`: validate a dataset and show what the model will see.

The flags are the config's `data:` fields (or `--config` takes them from a config); the
check is tunewiz.engine.check_data. `--json` prints the report as one JSON object (what
the wizard reads); on a terminal the trained tokens show in bold green, piped between
[[ and ]].
"""

from __future__ import annotations

import argparse
import json
import sys

OPEN, CLOSE = "[[", "]]"          # trained spans in plain output
BAR_WIDTH = 40


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("check-data", help="validate a dataset and show what the model will see",
                       description="Read and tokenize the data as training would: bad records (file:line), "
                                   "counts, truncation, a length histogram and the first sample with its "
                                   "trained tokens marked. Loads only the tokenizer.")
    s.add_argument("files", nargs="+", metavar="SOURCE",
                   help="data files (JSON, JSONL, Parquet, Arrow, CSV, TSV), save_to_disk folders, folders of "
                        "data files, or hub dataset ids (owner/name[/config][:split])")
    s.add_argument("--format", default="auto", help="auto | pretrain | conversation | alpaca | openai | sharegpt")
    s.add_argument("--model", default="demo", help='tokenizer to count with ("demo" or a local folder)')
    s.add_argument("--template", default="auto", help="auto (the tokenizer's chat template) or a named template")
    s.add_argument("--max-length", type=int, default=2048, help="sequence length to check truncation against")
    s.add_argument("--system", default="", help="system prompt added where a sample has none")
    s.add_argument("--stage", default=None, choices=["sft", "pretrain"], help="default: pretrain for text data, else sft")
    s.add_argument("--skip-bad", action="store_true",
                   help="leave out bad records (counted and the first listed) instead of failing; "
                        "in a config: data.skip_invalid: true")
    s.add_argument("--json", action="store_true", help="print the report as one JSON object (spans of the first sample)")
    return s


def run(args) -> int:
    from tunewiz.engine.check_data import check_data
    from tunewiz.engine.contract.config import DataConfig

    data = DataConfig(files=list(args.files), format=args.format, template=args.template, system=args.system,
                      max_length=args.max_length, skip_invalid=args.skip_bad)
    report = check_data(data, args.model, stage=args.stage, progress=sys.stderr.isatty() or not args.json)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_report(report)
    return 0


def print_report(report) -> None:
    out = _Output()
    stats = report.stats
    for name, fmt in report.formats.items():
        out.line(f"{name}: format {fmt}")
    template = "auto (the tokenizer's chat template)" if report.template == "auto" else report.template
    out.line(f"stage {report.stage}, template {template}, max length {report.max_length}")
    for warning in report.warnings:
        out.warning(f"warning: {warning}")
    out.line("")
    notes = ([f"{report.filtered} dropped: no output"] if report.filtered else []) + \
        ([f"{report.skipped} bad ones skipped"] if report.skipped else [])
    out.line(f"records    {stats['records']}" + (f" ({', '.join(notes)})" if notes else ""))
    share = stats["trained_tokens"] / max(stats["tokens"], 1)
    out.line(f"tokens     {stats['tokens']:,} ({stats['trained_tokens']:,} trained, {share:.0%})")
    out.line(f"truncated  {stats['truncated']} of {stats['samples']} at {report.max_length} tokens")
    if stats["no_loss"]:
        out.line(f"no loss    {stats['no_loss']} samples have no answer left within {report.max_length} tokens "
                 "(skipped by training)")
    out.line("")
    out.line("tokens per sample:")
    buckets = stats["length_histogram"]
    last = max(i for i, b in enumerate(buckets) if b["count"]) if stats["samples"] else 0
    peak = max(b["count"] for b in buckets) or 1
    for b in buckets[:last + 1]:  # empty buckets past the longest sample say nothing
        bar = "█" * round(BAR_WIDTH * b["count"] / peak) if b["count"] else ""
        out.line(f"  {b['lo'] + 1:>6}-{b['hi']:<6} {bar} {b['count']}")
    out.line("")
    out.line(f"first sample ({report.first_source}); trained tokens "
             + ("in bold green:" if out.rich else f"between {OPEN} and {CLOSE}:"))
    spans = list(report.first_spans)
    if report.first_truncated:
        spans.append((f" … (cut at {report.first_tokens} tokens)", False))
    out.sample(spans)


class _Output:
    """Plain text when piped (trained spans in [[...]]), rich colour on a terminal."""

    def __init__(self) -> None:
        self.rich = sys.stdout.isatty()
        if self.rich:
            from rich.console import Console

            self.console = Console(highlight=False)

    def line(self, text: str) -> None:
        if self.rich:
            self.console.print(text, markup=False)
        else:
            print(text)

    def warning(self, text: str) -> None:
        if self.rich:
            self.console.print(text, markup=False, style="yellow")
        else:
            print(text)

    def sample(self, runs: list[tuple[str, bool]]) -> None:
        if self.rich:
            from rich.text import Text

            text = Text()
            for part, trained in runs:
                text.append(part, style="bold green" if trained else "dim")
            self.console.print(text)
        else:
            print("".join(f"{OPEN}{part}{CLOSE}" if trained else part for part, trained in runs))
