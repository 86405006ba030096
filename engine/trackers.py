"""TensorBoard and Weights & Biases as extra sinks of a run's events (train.report_to).

events.jsonl stays the run's one record (the TUI, `tunewiz runs` and resume read it); a
tracker is fed the very events written there, as they are emitted, so its curves are the
same numbers and nothing is computed twice. Only rank 0 writes events, so only rank 0
logs. Each tracker opens on the run's first event (after preflight found its package),
writes under the run directory, and is closed with the event writer.
"""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path
from typing import Any

# step event field -> the scalar's name in the trackers
STEP_SCALARS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
                "tokens_per_s": "train/tokens_per_s", "trained_tokens_per_s": "train/trained_tokens_per_s",
                "mem_gib": "train/mem_gib", "epoch": "train/epoch"}
EVAL_TEXT = "eval/answers"
TENSORBOARD_DIR = "tensorboard"
WANDB_PROJECT = "tunewiz"


class TrackedEvents:
    """An event writer whose step, eval and start events also go to the trackers."""

    def __init__(self, writer, trackers: list):
        self.writer, self.trackers = writer, trackers

    def emit(self, type_: str, **fields_: Any) -> dict:
        ev = self.writer.emit(type_, **fields_)
        for tracker in self.trackers:
            tracker.take(ev)
        return ev

    def try_emit(self, type_: str, **fields_: Any) -> bool:
        # Only a failing run's last words (error, done) come this way: nothing to plot.
        return self.writer.try_emit(type_, **fields_)

    def close(self) -> None:
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception as e:  # noqa: BLE001 - a tracker's last flush must not fail a finished run
                print(f"tunewiz: warning: closing {tracker.name} failed: {e}", file=sys.stderr, flush=True)
        self.writer.close()


def with_trackers(writer, names: list[str], run: Path):
    """writer itself when the config names no tracker, else it wrapped with them."""
    if not names:
        return writer
    makers = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}
    return TrackedEvents(writer, [makers[name](Path(run)) for name in names])


def eval_markdown(samples: list[dict]) -> str:
    """The eval answers as TensorBoard shows text (markdown): each prompt, then its answer."""
    return "\n\n".join(f"**{s['input']}**\n\n{s['output']}" for s in samples)


class Tracker:
    """Opens on the first event it is given; a subclass logs scalars and answers."""

    def __init__(self, run: Path):
        self.run = run
        self.opened = False

    def take(self, ev: dict) -> None:
        if ev["type"] not in ("start", "step", "eval"):
            return  # progress and logs come before the model loads: opening waits for start
        if not self.opened:
            self.open(ev.get("config"))
            self.opened = True
        if ev["type"] == "step":
            scalars = {name: ev[key] for key, name in STEP_SCALARS.items()
                       if isinstance(ev.get(key), (int, float))}
            self.scalars(ev["step"], scalars)
        elif ev["type"] == "eval":
            self.answers(ev["step"], ev["samples"])

    def open(self, config: dict | None) -> None:
        raise NotImplementedError

    def scalars(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def answers(self, step: int, samples: list[dict]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """Event files in RUN/tensorboard (`tensorboard --logdir RUN/tensorboard`)."""

    name = "tensorboard"

    def open(self, config: dict | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run / TENSORBOARD_DIR))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # a live `tensorboard` shows each step as it lands

    def answers(self, step: int, samples: list[dict]) -> None:
        self.writer.add_text(EVAL_TEXT, eval_markdown(samples), step)
        self.writer.flush()

    def close(self) -> None:
        if self.opened:
            self.writer.close()


class WandbTracker(Tracker):
    """A W&B run in RUN/wandb: online when WANDB_MODE says so or an API key is known, else
    offline (no network needed; `wandb sync RUN/wandb/offline-run-*` uploads it later)."""

    name = "wandb"

    def open(self, config: dict | None) -> None:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")  # its banner would bury the run's own lines
        self.wandb = wandb
        settings = dict(project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
                        name=(config or {}).get("name") or self.run.name, dir=str(self.run), config=config or {})
        mode = wandb_mode()
        try:
            self.run_handle = wandb.init(**settings, mode=mode)
        except Exception:  # noqa: BLE001 - wandb's own errors: a key but no network (or server)
            if mode is not None or os.environ.get("WANDB_MODE"):
                raise
            # The run is recorded offline instead; `wandb sync` uploads it once the network is back.
            self.run_handle = wandb.init(**settings, mode="offline")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run_handle.log(values, step=step)

    def answers(self, step: int, samples: list[dict]) -> None:
        table = self.wandb.Table(columns=["step", "input", "output"],
                                 data=[[step, s["input"], s["output"]] for s in samples])
        self.run_handle.log({EVAL_TEXT: table}, step=step)

    def close(self) -> None:
        if self.opened:
            self.run_handle.finish()


def wandb_mode() -> str | None:
    """None (wandb decides: WANDB_MODE, or online) when the user said or a key is known;
    "offline" otherwise, so a machine with no account or no network still records the run."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return None
    host = (os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return None if netrc.netrc().authenticators(host) else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"
