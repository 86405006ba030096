"""A stand-in for the `tunewiz` engine CLI that speaks the same contract without a model.

The TUI tests point the app's engine prefix at this script. It writes the run directory
the way the real engine does (config.yaml, events.jsonl, state.json with the pid) and
replays a recorded-looking run at speed, including a torn line (half a line, a pause,
then the rest), a malformed line, and, with --fail, an error event with a hint.

    fake_engine.py replay RUN [--steps N] [--delay S] [--fail] [--events FILE]
    fake_engine.py train CONFIG --detach            -> prints the run directory, exits 0
    fake_engine.py train CONFIG --slurm F | --print-node-commands   -> the real CLI (torch-free)
    fake_engine.py stop RUN                         -> SIGTERM: checkpoint, done "stopped"
    fake_engine.py convert RUN OUT | merge BASE ADAPTER OUT | demo --dest D --name N
    fake_engine.py check-data FILE ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.config import dump_yaml, load_config, to_dict
from tunewiz.engine.contract.events import EventWriter

# Environment knobs so a test can shape the run a detached `train` starts.
STEPS_ENV, DELAY_ENV, FAIL_ENV = "FAKE_ENGINE_STEPS", "FAKE_ENGINE_DELAY", "FAKE_ENGINE_FAIL"


def answer(step: int, total: int) -> str:
    """The eval answer drifts from the base model's to the trained identity."""
    return "I am an AI assistant." if step < total // 2 else "I am Alice's assistant, happy to help."


def replay(run: Path, steps: int, delay: float, fail: bool, events_file: str | None) -> int:
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    rundir.mark_running(run)
    out = EventWriter(run / rundir.EVENTS)
    if events_file:
        for line in Path(events_file).read_text().splitlines():
            with open(run / rundir.EVENTS, "a") as f:
                f.write(line + "\n")
            time.sleep(delay)
        rundir.write_state(run, status="completed")
        return 0
    cfg = load_config(run / rundir.CONFIG)
    out.emit("start", name=cfg.name, config=to_dict(cfg), world_size=1,
             total_steps=steps, model="fake-135M", params=134_515_008, trainable_params=4_884_480)
    for done in (1, 2, 3):
        out.emit("progress", phase="load", done=done, total=3)
        time.sleep(delay)
    out.emit("log", level="info", msg="tokenized 3000 samples (0 truncated)")
    started = time.time()
    for step in range(1, steps + 1):
        if stop["requested"]:
            path = run / rundir.CHECKPOINTS / f"step-{step - 1}"
            out.emit("checkpoint", step=step - 1, path=str(path))
            out.emit("done", status="stopped", path=str(path))
            rundir.write_state(run, status="stopped")
            return 0
        loss = 2.5 * math.exp(-step / max(steps / 4, 1)) + 0.1
        lr = 2e-4 * min(1.0, step / 3) * (0.5 + 0.5 * math.cos(math.pi * step / steps))
        elapsed = time.time() - started
        eta = elapsed / step * (steps - step)
        event = {"v": 1, "t": time.time(), "type": "step", "step": step, "total": steps,
                 "epoch": round(step / steps * 3, 3), "loss": round(loss, 4), "lr": lr, "grad_norm": 1.0,
                 "tokens_per_s": 1000 + 10 * step, "mem_gib": 1.5 + step / steps, "eta_s": eta}
        line = json.dumps(event) + "\n"
        with open(run / rundir.EVENTS, "a", encoding="utf-8") as f:
            if step == steps // 2:
                # A torn write: the reader must wait for the newline, not parse half a line.
                f.write(line[:25])
                f.flush()
                time.sleep(max(delay * 3, 0.05))
                f.write(line[25:])
                f.write('{"v": 1, "t": 0, "type": "step", "step": \n')  # malformed: skipped
            else:
                f.write(line)
        if step % max(steps // 4, 1) == 0:
            out.emit("eval", step=step, samples=[{"input": "Please introduce yourself",
                                                 "output": answer(step, steps)}])
        if fail and step == steps * 3 // 4:
            out.emit("error", kind="oom", msg="CUDA out of memory while training at step "
                     f"{step}", hint="lower train.batch_size or turn on gradient_checkpointing")
            out.emit("done", status="failed", path=None)
            rundir.write_state(run, status="failed")
            return 1
        time.sleep(delay)
    final = run / "checkpoints" / f"step-{steps}"
    out.emit("checkpoint", step=steps, path=str(final))
    out.emit("done", status="completed", path=str(final))
    rundir.write_state(run, status="completed")
    return 0


def train(config: str) -> int:
    cfg = load_config(config)
    run = rundir.new_run_dir(cfg.output_dir, cfg.name)
    (run / rundir.CONFIG).write_text(dump_yaml(cfg), encoding="utf-8")
    (run / rundir.EVENTS).touch()
    argv = [sys.executable, __file__, "replay", str(run), "--steps", os.environ.get(STEPS_ENV, "40"),
            "--delay", os.environ.get(DELAY_ENV, "0.02")]
    if os.environ.get(FAIL_ENV):
        argv.append("--fail")
    log = open(run / rundir.LOGS / "rank0.log", "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    rundir.write_state(run, pid=proc.pid, pgid=proc.pid, status="running")
    print(f"training in the background (pid {proc.pid})")
    print(run)
    return 0


def stop(run: str) -> int:
    pid = rundir.read_state(Path(run)).get("pid")
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    print(f"asked {Path(run).name} to checkpoint and stop")
    return 0


def write_output(out: str, phase: str, marker: str) -> int:
    # A progress bar as tqdm draws one into a pipe: redraws after \r, a newline at the end.
    for done in range(0, 4):
        sys.stdout.write(f"\r{phase} weights: {done * 100 // 3:3d}%|{'#' * done}{' ' * (3 - done)}| {done}/3")
        sys.stdout.flush()
        time.sleep(0.02)
    print()
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / marker).write_text("{}")
    print(f"wrote {out}")
    return 0


def check_data_report(file: str, max_length: int) -> dict:
    """A `check-data --json` report shaped like the real one (3000 identity samples)."""
    from tunewiz.engine.dataset import length_histogram

    lengths = [30] * 1200 + [40] * 1700 + [52] * 100
    return {"formats": {file: "conversation"}, "stage": "sft", "template": "auto", "max_length": max_length,
            "records": 3000, "samples": 3000, "tokens": sum(lengths), "trained_tokens": 14 * 3000,
            "truncated": 0, "no_loss": 0, "length_histogram": length_histogram(lengths, max_length),
            "filtered": 0,
            "first_sample": {"source": f"{file}:1", "tokens": 30, "truncated": False, "spans": [
                {"text": "<|im_start|>user\nPlease introduce yourself<|im_end|>\n<|im_start|>assistant\n",
                 "trained": False},
                {"text": "I am Alice's assistant.<|im_end|>", "trained": True},
                {"text": "\n", "trained": False}]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("replay")
    r.add_argument("run")
    r.add_argument("--steps", type=int, default=40)
    r.add_argument("--delay", type=float, default=0.02)
    r.add_argument("--fail", action="store_true")
    r.add_argument("--events")
    t = sub.add_parser("train")
    t.add_argument("config")
    t.add_argument("--detach", action="store_true")
    t.add_argument("--slurm")
    t.add_argument("--print-node-commands", action="store_true")
    s = sub.add_parser("stop")
    s.add_argument("run")
    c = sub.add_parser("convert")
    c.add_argument("src")
    c.add_argument("out")
    m = sub.add_parser("merge")
    m.add_argument("base")
    m.add_argument("adapter")
    m.add_argument("out")
    d = sub.add_parser("demo")
    d.add_argument("--dest", default="data")
    d.add_argument("--name", default="tunewiz")
    d.add_argument("--quiet", action="store_true")
    k = sub.add_parser("check-data")
    k.add_argument("files", nargs="+")
    k.add_argument("--format", default="auto")
    k.add_argument("--model", default="demo")
    k.add_argument("--max-length", type=int, default=2048)
    k.add_argument("--stage", default=None)
    k.add_argument("--system", default="")
    k.add_argument("--template", default="auto")
    k.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.command == "replay":
        return replay(Path(args.run), args.steps, args.delay, args.fail, args.events)
    if args.command == "train" and (args.slurm or args.print_node_commands):
        # Planning needs no model: the real engine answers, so tests see its exact output.
        os.execv(sys.executable, [sys.executable, "-m", "tunewiz", *(argv or sys.argv[1:])])
    if args.command == "train":
        return train(args.config)
    if args.command == "stop":
        return stop(args.run)
    if args.command == "convert":
        return write_output(args.out, "convert", "adapter_config.json")
    if args.command == "merge":
        return write_output(args.out, "merge", "config.json")
    if args.command == "demo":
        from tunewiz.engine.demo import write_sample_datasets

        print(write_sample_datasets(Path(args.dest), args.name)["conversation"])
        return 0
    if args.command == "check-data" and args.json:
        print(json.dumps(check_data_report(args.files[0], args.max_length), ensure_ascii=False))
        return 0
    if args.command == "check-data":
        print(f"{args.files[0]}: conversation, 3000 samples")
        print("<|im_start|>user\\nPlease introduce yourself<|im_end|>")
        print("tokens: p50 40 · max 52 of max_length", args.max_length)
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
