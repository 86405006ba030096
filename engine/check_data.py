"""`tunewiz check-data`: validate a dataset and show what the model will see.

Uses the same reading, templates and encoding as training, and loads only the tokenizer.
It streams: the data is read and encoded chunk by chunk on every core, and only per-sample
counts are kept, so a million samples check in flat memory. Bad records are listed one
``file:line: problem`` per line before the command fails.
With ``--json`` the report is one JSON object on stdout (what the wizard reads): formats,
counts, the length histogram, and the first sample as ``{text, trained}`` spans.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .dataset import Tally, data_stats, samples_until_problem
from .encode import IGNORE, Encoded, Encoder
from .contract.errors import ConfigError, DataError, ModelError
from .contract.formats import DataErrors, SampleStream
from .parallel_encode import CHUNK, available_cores, encode_stream
from .contract.progress_meter import ProgressMeter
from .contract.templates import AUTO, get_template

OPEN, CLOSE = "[[", "]]"          # trained spans in plain output
BAR_WIDTH = 40


def cmd_check_data(args) -> int:
    if args.max_length < 1:
        raise ConfigError(f"--max-length: must be at least 1, got {args.max_length}", "e.g. --max-length 2048")
    if args.template != AUTO:
        get_template(args.template)  # a typo fails before the slow tokenizer load
    detected = _validate(args.files, args.format)
    stage = args.stage or detected
    tokenizer = _tokenizer(args.model)
    encoder = Encoder(tokenizer, template=args.template, system=args.system, stage=stage,
                      max_length=args.max_length)
    loaded, stats, first = _check(args, encoder)
    if getattr(args, "json", False):
        print(json.dumps(_report(args, loaded, stage, encoder, stats, first, tokenizer), ensure_ascii=False))
        return 0

    out = _Output()
    for name, fmt in loaded.formats.items():
        out.line(f"{name}: format {fmt}")
    template = "auto (the tokenizer's chat template)" if encoder.describe() == "auto" else encoder.describe()
    out.line(f"stage {stage}, template {template}, max length {args.max_length}")
    out.line("")
    dropped = f" ({loaded.filtered} dropped: no output)" if loaded.filtered else ""
    out.line(f"records    {stats['records']}{dropped}")
    share = stats["trained_tokens"] / max(stats["tokens"], 1)
    out.line(f"tokens     {stats['tokens']:,} ({stats['trained_tokens']:,} trained, {share:.0%})")
    out.line(f"truncated  {stats['truncated']} of {stats['samples']} at {args.max_length} tokens")
    if stats["no_loss"]:
        out.line(f"no loss    {stats['no_loss']} samples have no answer left within {args.max_length} tokens "
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
    out.line(f"first sample ({loaded.first.source}); trained tokens "
             + ("in bold green:" if out.rich else f"between {OPEN} and {CLOSE}:"))
    out.sample(_runs(first, tokenizer))
    return 0


class _Streamed:
    """What the report needs of the stream once it is read: formats, counts, first sample."""

    def __init__(self, stream, first):
        self.formats, self.records, self.filtered, self.first = (stream.formats, stream.records,
                                                                 stream.filtered, first)


def _check(args, encoder: Encoder) -> tuple[_Streamed, dict, Encoded]:
    """Read and encode the data as a stream (several processes; memory flat in its size),
    keeping only per-sample counts and the first sample."""
    stream = SampleStream(args.files, args.format)
    firsts: list = []

    def keep_first(samples):
        for s in samples:
            if not firsts:
                firsts.append(s)
            yield s

    meter = ProgressMeter("checking", "samples", stream=sys.stderr,
                          show=sys.stderr.isatty() or not getattr(args, "json", False))
    hint = stream.rows_hint()
    tally = Tally()
    for chunk in encode_stream(encoder, keep_first(samples_until_problem(stream)), available_cores()):
        tally.add(chunk)
        if tally.samples >= 4 * CHUNK:   # small files need no progress line
            meter.update(tally.samples, max(hint or 0, tally.samples + 1))
    _raise_problems(stream)
    if meter.started is not None:
        meter.update(tally.samples, tally.samples)
    lengths, counts, _first, truncated = tally.arrays()
    stats = data_stats(lengths, counts, truncated, args.max_length, stream.records)
    return _Streamed(stream, firsts[0]), stats, encoder.encode(firsts[0])


def _raise_problems(stream) -> None:
    """Every problem on its own line (up to MAX_ERRORS), then one error with the count."""
    try:
        stream.raise_if_problems()
    except DataErrors as e:
        if e.total == 1:
            raise
        for line in e.problems:
            print(line, file=sys.stderr)
        if e.total > len(e.problems):
            print(f"... and {e.total - len(e.problems)} more", file=sys.stderr)
        raise DataError(f"{e.total} problems in the data", e.own_hint or "fix the records listed above") from None


def _validate(files: list[str], fmt: str) -> str:
    """Read every record once without tokenizing, so bad data is reported before the
    tokenizer loads (and without a model at all); returns the stage the data implies:
    pretrain for plain-text data, else sft."""
    stream = SampleStream(files, fmt)
    for _ in stream:
        pass
    _raise_problems(stream)
    return "pretrain" if set(stream.formats.values()) == {"pretrain"} else "sft"


def _tokenizer(model: str):
    from .models import load_tokenizer, resolve_model_path

    path = resolve_model_path(model)
    if not Path(path).is_dir():
        raise ModelError(f"{model}: not a model folder", 'give a local Hugging Face folder, or "demo"')
    return load_tokenizer(Path(path))


def _report(args, loaded, stage: str, encoder: Encoder, stats: dict, first: Encoded, tokenizer) -> dict:
    """The --json report: everything the text report says, as data."""
    return {
        "formats": dict(loaded.formats),
        "stage": stage,
        "template": encoder.describe(),
        "max_length": args.max_length,
        **stats,
        "filtered": loaded.filtered,
        "first_sample": {
            "source": loaded.first.source,
            "tokens": len(first.input_ids),
            "truncated": first.truncated,
            "spans": [{"text": text, "trained": trained}
                      for text, trained in _runs(first, tokenizer, cut_note=False)],
        },
    }


def _runs(enc: Encoded, tokenizer, cut_note: bool = True) -> list[tuple[str, bool]]:
    """The sample's text as (text, trained) runs, decoded run by run."""
    runs: list[tuple[str, bool]] = []
    start = 0
    for i in range(1, len(enc.input_ids) + 1):
        if i == len(enc.input_ids) or (enc.labels[i] != IGNORE) != (enc.labels[start] != IGNORE):
            text = tokenizer.decode(enc.input_ids[start:i], skip_special_tokens=False,
                                    clean_up_tokenization_spaces=False)
            runs.append((text, enc.labels[start] != IGNORE))
            start = i
    if enc.truncated and cut_note:
        runs.append((f" … (cut at {len(enc.input_ids)} tokens)", False))
    return runs


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

    def sample(self, runs: list[tuple[str, bool]]) -> None:
        if self.rich:
            from rich.text import Text

            text = Text()
            for part, trained in runs:
                text.append(part, style="bold green" if trained else "dim")
            self.console.print(text)
        else:
            print("".join(f"{OPEN}{part}{CLOSE}" if trained else part for part, trained in runs))
