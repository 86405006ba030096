"""Validate a dataset and show what the model will see (the library side of `tunewiz check-data`).

Uses the same reading, templates and encoding as training, and loads only the tokenizer.
It streams: the data is read and encoded chunk by chunk on every core, and only per-sample
counts are kept, so a million samples check in flat memory. Bad records are listed one
``file:line: problem`` per line before the check fails, or, with ``data.skip_invalid``,
left out and named in a warning (as are unfilled ``{{placeholders}}``). The report is data (DataReport);
tunewiz/commands/check_data.py prints it as text or JSON (what the wizard reads).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .dataset import Tally, data_stats, samples_until_problem
from .encode import IGNORE, Encoded, Encoder
from .contract.config import DataConfig
from .contract.errors import ConfigError, DataError, ModelError
from .contract.formats import DataErrors, SampleStream
from .parallel_encode import CHUNK, available_cores, encode_stream
from .contract.progress_meter import ProgressMeter
from .contract.templates import AUTO, get_template


@dataclass
class DataReport:
    """What check-data found: formats per source, counts, and the first sample as spans."""

    formats: dict[str, str]
    stage: str
    template: str                    # "auto" or the template's name
    max_length: int
    stats: dict                      # records, samples, tokens, trained_tokens, truncated, no_loss, histogram
    filtered: int                    # records dropped for having no output
    skipped: int                     # bad records left out (data.skip_invalid)
    first_source: str                # file:line of the first sample
    first_tokens: int
    first_truncated: bool
    first_spans: list[tuple[str, bool]]   # (text, trained), decoded span by span
    warnings: list[str]              # one line each: skipped bad records, unfilled placeholders

    def to_json(self) -> dict:
        return {
            "formats": dict(self.formats), "stage": self.stage, "template": self.template,
            "max_length": self.max_length, **self.stats, "filtered": self.filtered, "skipped": self.skipped,
            "warnings": list(self.warnings),
            "first_sample": {"source": self.first_source, "tokens": self.first_tokens,
                             "truncated": self.first_truncated,
                             "spans": [{"text": t, "trained": k} for t, k in self.first_spans]},
        }


def check_data(data: DataConfig, model: str, stage: str | None = None, progress: bool = True) -> DataReport:
    """Read, validate and encode data.files as training would (stage None: pretrain for
    plain-text data, else sft); raise DataError listing the bad records."""
    if data.max_length < 1:
        raise ConfigError(f"--max-length: must be at least 1, got {data.max_length}", "e.g. --max-length 2048")
    if data.template != AUTO:
        get_template(data.template)  # a typo fails before the slow tokenizer load
    detected = _validate(data)
    stage = stage or detected
    tokenizer = _tokenizer(model)
    encoder = Encoder.from_config(tokenizer, data, stage)
    loaded, stats, first = _check(data, encoder, progress)
    return DataReport(formats=dict(loaded.formats), stage=stage, template=encoder.describe(),
                      max_length=data.max_length, stats=stats, filtered=loaded.filtered, skipped=loaded.skipped,
                      first_source=loaded.first.source, first_tokens=len(first.input_ids),
                      first_truncated=first.truncated, first_spans=_runs(first, tokenizer),
                      warnings=loaded.warnings)


class _Streamed:
    """What the report needs of the stream once it is read: formats, counts, first sample."""

    def __init__(self, stream, first):
        self.formats, self.records, self.filtered, self.first = (stream.formats, stream.records,
                                                                 stream.filtered, first)
        self.warnings, self.skipped = stream.warnings(), stream.problems.skipped


def _check(data: DataConfig, encoder: Encoder, progress: bool) -> tuple[_Streamed, dict, Encoded]:
    """Read and encode the data as a stream (several processes; memory flat in its size),
    keeping only per-sample counts and the first sample."""
    stream = SampleStream(data.files, data.format, skip_invalid=data.skip_invalid)
    firsts: list = []

    def keep_first(samples):
        for s in samples:
            if not firsts:
                firsts.append(s)
            yield s

    meter = ProgressMeter("checking", "samples", stream=sys.stderr, show=progress)
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
    stats = data_stats(lengths, counts, truncated, data.max_length, stream.records)
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
        fix = e.own_hint or "fix the records listed above"
        if stream.problems.bad_records == e.total:   # all of them records that could be left out
            fix += ", or leave them out with --skip-bad"
        raise DataError(f"{e.total} problems in the data", fix) from None


def _validate(data: DataConfig) -> str:
    """Read every record once without tokenizing, so bad data is reported before the
    tokenizer loads (and without a model at all); returns the stage the data implies:
    pretrain for plain-text data, else sft."""
    stream = SampleStream(data.files, data.format, skip_invalid=data.skip_invalid)
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


def _runs(enc: Encoded, tokenizer) -> list[tuple[str, bool]]:
    """The sample's text as (text, trained) runs, decoded run by run."""
    runs: list[tuple[str, bool]] = []
    start = 0
    for i in range(1, len(enc.input_ids) + 1):
        if i == len(enc.input_ids) or (enc.labels[i] != IGNORE) != (enc.labels[start] != IGNORE):
            text = tokenizer.decode(enc.input_ids[start:i], skip_special_tokens=False,
                                    clean_up_tokenization_spaces=False)
            runs.append((text, enc.labels[start] != IGNORE))
            start = i
    return runs
