"""The micro-batch and checkpointing a GPU run trains with, chosen from the GPU's memory.

A config says how many sequences each device trains on per optimizer step:
``train.batch_size x train.grad_accum``. The presets say 1 x 16 with gradient
checkpointing, which fits almost any GPU and leaves a large one mostly idle. With
``train.auto_batch: true`` (the default) a CUDA run regroups those sequences into the
micro-batch that trains fastest within the memory the estimate (memory_estimate.py) gives
the GPU, and turns checkpointing off where that is faster and still fits. The sequences of
each optimizer step, and the loss normaliser (the step's trained tokens, engine/train.py),
do not change, so neither does what is learned: only how the step is cut into micro-steps.

The choice is a pure function of the config, the model's sizes and the free memory, so
every rank, a resume and the wizard's Review step reach the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .gpus import Gpu
from .memory_estimate import CUDA_CONTEXT_GIB, Fit, _with, check_fit, estimate
from .model_facts import ModelFacts

# Tokens per micro-batch past which a bigger micro-batch no longer speeds a step up: on one
# H200 (InternLM2-1.8B shape, LoRA, docs/bench.md) 4 x 2,048 tokens ran at 49.9k tok/s and
# 8 x 2,048 at 44-51k, while 1 x 2,048 ran at half the rate of 4 x 2,048.
SATURATING_TOKENS = 8192
# Below saturation a step's pace grows about as the square root of its tokens (1 x 2,048
# at 0.49x of 4 x 2,048, measured above).
PACE_EXPONENT = 0.5
# Full fine-tuning's step is nearly all matrix products, which keep gaining from bigger
# micro-batches past saturation: on one H200 (1.8B shape, FP8 products, docs/bench.md) 4, 8
# and 16 x 2,048-token rows ran at 54.4k, 56.4k and 59.5k tok/s, about 2^0.065 per doubling.
# Without FP8 (bf16 products) past 4 rows is not measured: the rule applies there too, on the
# grounds that bigger products are no slower.
FULL_PACE_EXPONENT_PAST_SATURATION = 0.065
# Gradient checkpointing recomputes each layer's forward pass: steps take about 1.3x as long.
CHECKPOINTING_PACE = 1 / 1.3
# The estimate is calibrated within +-15% (docs/memory.md): keep that much of the free
# memory unused, so an estimate on the low side still fits.
HEADROOM = 0.85


@dataclass(frozen=True)
class BatchChoice:
    batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    needed_gib: float
    free_gib: float

    def describe(self, cfg: Config) -> str:
        t = cfg.train
        was = f"{t.batch_size} x {t.grad_accum}" + (", checkpointing" if t.gradient_checkpointing else "")
        now = f"{self.batch_size} x {self.grad_accum}" + (", checkpointing" if self.gradient_checkpointing else "")
        same = " (as written)" if was == now else f" (config: {was})"
        return (f"train.auto_batch: micro-batch x accumulation {now}{same}: about {self.needed_gib:.1f} "
                f"of {self.free_gib:.1f} GiB free per GPU; train.auto_batch: false keeps the config's")


def applies(cfg: Config, devices: int) -> str | None:
    """None when auto_batch may choose for this run, else why it keeps the config's values."""
    if not cfg.train.auto_batch:
        return "train.auto_batch is false"
    if devices <= 0:
        return "not on a CPU"
    if cfg.layout.uses_deepspeed:
        return "not under DeepSpeed (its estimate is not calibrated yet)"
    return None


def choose(cfg: Config, facts: ModelFacts, devices: int, free_gib: float,
           world: int | None = None) -> BatchChoice | None:
    """The fastest (micro-batch, checkpointing) that keeps batch_size x grad_accum and fits
    HEADROOM of free_gib; None when auto_batch does not apply, the model's sizes are
    unknown, or nothing fits (the config's own values then stand, and an out-of-memory
    step says what to change)."""
    if applies(cfg, devices) is not None:
        return None
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    budget = free_gib * HEADROOM
    best: tuple[float, BatchChoice] | None = None
    for rows in (d for d in range(1, per_step + 1) if per_step % d == 0):
        for ckpt in (False, True):
            trial = _with(cfg, "train", batch_size=rows, grad_accum=per_step // rows, gradient_checkpointing=ckpt)
            est = estimate(trial, facts, devices, world)
            if est is None:
                return None
            if est.needed_gib > budget:
                continue
            pace = relative_pace(cfg, rows, ckpt)
            choice = BatchChoice(rows, per_step // rows, ckpt, est.needed_gib, free_gib)
            # Equal pace: the smaller micro-batch, which leaves more memory free.
            if best is None or pace > best[0] + 1e-9:
                best = (pace, choice)
    return best[1] if best else None


def relative_pace(cfg: Config, rows: int, checkpointing: bool) -> float:
    """How fast a micro-batch of `rows` trains, relative to one of SATURATING_TOKENS tokens
    without checkpointing (the measured rules above; only their order matters)."""
    share = rows * cfg.data.max_length / SATURATING_TOKENS
    pace = min(1.0, share) ** PACE_EXPONENT
    if cfg.method == "full" and share > 1.0:
        pace *= share ** FULL_PACE_EXPONENT_PAST_SATURATION
    return pace * (CHECKPOINTING_PACE if checkpointing else 1.0)


def first_gpu_memory(gpus: list[Gpu], ids: list[int] | None = None) -> tuple[float | None, float]:
    """(total, used) GiB of the GPU the first process trains on, whose free memory choose()
    decides from: ids[0] when the run was given GPU ids (the first of them is rank 0's),
    else the first of `gpus`; (None, 0.0) when that GPU is not among them."""
    first = next((g for g in gpus if ids is None or (ids and g.index == ids[0])), None)
    if first is None:
        return None, 0.0
    return first.memory_total_gib, first.memory_used_mib / 1024


def expected_free_gib(total_gib: float, used_gib: float = 0.0) -> float:
    """What torch.cuda.mem_get_info reports free when a run makes its choice (engine/train.py):
    by then the run's own CUDA context is on the GPU, beside what other processes use."""
    return max(0.0, total_gib - used_gib - CUDA_CONTEXT_GIB)


def _batch(batch_size: int, grad_accum: int, checkpointing: bool) -> str:
    return f"micro-batch {batch_size} x grad_accum {grad_accum}, checkpointing {'on' if checkpointing else 'off'}"


def preview(cfg: Config, facts: ModelFacts, devices: int, total_gib: float | None, used_gib: float = 0.0,
            world: int | None = None) -> str:
    """One line: what train.auto_batch will do when this run starts on `devices` GPUs of
    total_gib each (0 devices: the CPU), from the same choose() the run calls, so the dry
    run and the wizard's Review show the run's own choice before it starts."""
    t = cfg.train
    written = _batch(t.batch_size, t.grad_accum, t.gradient_checkpointing)
    why = applies(cfg, devices)
    if why is None and total_gib is None:
        why = "the GPU's memory is not known here; --gpu-memory GIB shows its choice"
    if why is not None:
        return f"train.auto_batch: no regrouping ({why}): {written}, as written"
    free = expected_free_gib(total_gib, used_gib)
    choice = choose(cfg, facts, devices, free, world)
    if choice is None:
        return (f"train.auto_batch: no regrouping (none fits {HEADROOM:.0%} of the ≈ {free:.1f} GiB free "
                f"per GPU): {written}, as written")
    peak = estimate(apply(cfg, choice), facts, devices, world).peak_gib
    now = _batch(choice.batch_size, choice.grad_accum, choice.gradient_checkpointing)
    fit = f"peak ≈ {peak:.1f} GiB per GPU, needs ≈ {choice.needed_gib:.1f} of the ≈ {free:.1f} GiB free"
    if now == written:
        return f"train.auto_batch: keeps {written}, as written (nothing faster fits): {fit}"
    return f"train.auto_batch: regroups to {now} (config: {written}): {fit}; train.auto_batch: false keeps the config's"


def regrouped_fit(cfg: Config, fit: Fit | None, facts: ModelFacts, devices: int, total_gib: float | None,
                  used_gib: float, capacity_gib: float | None, device: str, world: int | None = None) -> Fit | None:
    """The fit of what this module will train instead, where the config as written does not
    fit (`fit`) and choose() finds a grouping that does; None otherwise. The run makes the
    same choice when it starts, so the dry run and the wizard's Review, which call this,
    never refuse a run that would train."""
    if fit is None or fit.fits or total_gib is None:
        return None
    choice = choose(cfg, facts, devices, expected_free_gib(total_gib, used_gib), world)
    if choice is None:
        return None
    after = check_fit(apply(cfg, choice), facts, devices, capacity_gib, device, world=world)
    return after if after is not None and after.fits else None


def apply(cfg: Config, choice: BatchChoice | None) -> Config:
    """cfg with the choice's micro-batch, accumulation and checkpointing (cfg when None)."""
    if choice is None:
        return cfg
    return _with(cfg, "train", batch_size=choice.batch_size, grad_accum=choice.grad_accum,
                 gradient_checkpointing=choice.gradient_checkpointing)
