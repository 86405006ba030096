"""Several processes through torchrun on CPU (gloo): one node x 2, and two "nodes" on localhost."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import read_events
from support.runs import assert_user_error, write_config, write_data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(run: Path) -> list[float]:
    return [e["loss"] for e in read_events(run / "events.jsonl") if e["type"] == "step"]


def main_run(tmp: Path) -> Path:
    runs = [r for r in rundir.list_runs(tmp / "runs") if "-node" not in r.name]
    assert len(runs) == 1, runs
    return runs[0]


LAYOUT = dict(train__max_steps=4, train__save_every=2, lora={"r": 8, "alpha": 16, "dropout": 0.0},
              eval={"inputs": ["Who are you?"], "every": 2, "max_new_tokens": 4})


def test_two_processes_match_one_at_the_same_global_batch(tiny_model, tmp_path, cli):
    data = write_data(tmp_path / "d.jsonl", n=24)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    r = cli("train", str(write_config(one, tiny_model, data, train__grad_accum=2, **LAYOUT)))
    assert r.returncode == 0, r.stderr
    cfg = write_config(two, tiny_model, data, train__grad_accum=1,
                       layout={"master_port": free_port()}, **LAYOUT)
    # a cache of its own, so the two ranks find none and must share one build
    r = cli("train", str(cfg), env={"NPROC_PER_NODE": "2", "TUNEWIZ_DATA_CACHE": str(tmp_path / "cache2")})
    assert r.returncode == 0, r.stderr + r.stdout
    run = main_run(two)
    evs = read_events(run / "events.jsonl")
    start = next(e for e in evs if e["type"] == "start")
    assert start["world_size"] == 2
    # rank 0 alone writes events: one start, one event per step, not two
    assert sum(e["type"] == "start" for e in evs) == 1
    assert [e["step"] for e in evs if e["type"] == "step"] == [1, 2, 3, 4]
    assert [e["step"] for e in evs if e["type"] == "eval"] == [0, 2, 4]
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
    # every rank keeps its own log
    logs = {p.name for p in (run / "logs").iterdir()}
    assert {"rank0.log", "rank1.log", "launcher.log"} <= logs
    assert "step 4/4" in (run / "logs" / "rank0.log").read_text()
    # one tokenizer per node: rank 0 tokenized, rank 1 mapped its store
    rank0, rank1 = ((run / "logs" / f"rank{k}.log").read_text() for k in (0, 1))
    assert "tokenizing the data" in rank0 and "tokenized into" in rank0
    assert "tokenizing the data" not in rank1 and "using the tokenized cache" in rank1
    assert len([p for p in (tmp_path / "cache2").iterdir() if p.is_dir()]) == 1
    assert (run / "checkpoints" / "step-4" / "rng-rank1.pt").is_file()
    assert losses(run) == pytest.approx(losses(main_run(one)), rel=1e-4)


def test_two_nodes_on_localhost(tiny_model, tmp_path):
    """Node 0 and node 1 as two supervisors, each started the way a user starts it."""
    import os

    port = free_port()
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl", n=24),
                       layout={"nnodes": 2, "master_port": port, "join_timeout_s": 120}, **LAYOUT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NPROC_PER_NODE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "tunewiz", "train", str(cfg), "--node-rank", str(k)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    run = main_run(tmp_path)
    start = next(e for e in read_events(run / "events.jsonl") if e["type"] == "start")
    assert start["world_size"] == 2
    assert read_events(run / "events.jsonl")[-1]["status"] == "completed"
    node1 = next(r for r in (tmp_path / "runs").iterdir() if r.name.endswith("-node1"))
    assert not read_events(node1 / "events.jsonl")  # only rank 0 writes events
    assert (node1 / "logs" / "rank1.log").is_file()
    assert json.loads((node1 / "state.json").read_text())["status"] == "completed"


def test_missing_node_stops_with_a_message(tiny_model, tmp_path, cli):
    port = free_port()
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"),
                       layout={"nnodes": 2, "master_port": port, "join_timeout_s": 3}, **LAYOUT)
    r = cli("train", str(cfg), env={"NPROC_PER_NODE": "1"})
    assert_user_error(r, f"node rank(s) 1 did not join 127.0.0.1:{port} within 3s")
    assert "--node-rank" in r.stderr
    run = main_run(tmp_path)
    err = next(e for e in read_events(run / "events.jsonl") if e["type"] == "error")
    assert err["kind"] == "distributed"
    assert rundir.run_info(run).status == "failed"


def test_node_without_master_says_where_it_looked(tiny_model, tmp_path, cli):
    port = free_port()
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"),
                       layout={"nnodes": 2, "master_port": port, "join_timeout_s": 2}, **LAYOUT)
    r = cli("train", str(cfg), "--node-rank", "1", env={"NPROC_PER_NODE": "1"})
    assert_user_error(r, f"could not reach node 0 at 127.0.0.1:{port}")


def test_print_node_commands_and_slurm(tiny_model, tmp_path, cli):
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"),
                       layout={"nnodes": 3, "master_addr": "10.0.0.5", "master_port": 29611})
    r = cli("train", str(cfg), "--print-node-commands")
    assert r.returncode == 0, r.stderr
    for k in range(3):
        assert f"tunewiz train {cfg} --node-rank {k}    # on node {k}" in r.stdout
    assert "10.0.0.5:29611" in r.stdout
    assert not (tmp_path / "runs").exists()  # printing starts nothing
    r = cli("train", str(cfg), "--slurm", str(tmp_path / "job.sbatch"))
    assert r.returncode == 0, r.stderr
    script = (tmp_path / "job.sbatch").read_text()
    assert "#SBATCH --nodes=3" in script and "--ntasks-per-node=1" in script
    assert "srun" in script and "NODE_RANK=$SLURM_NODEID" in script and f"tunewiz train {cfg}" in script
    assert "export PORT=29611" in script


def test_xtuner_environment_variables_override_the_layout(tiny_model, tmp_path, cli):
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"))
    r = cli("train", str(cfg), "--print-node-commands", env={"NNODES": "2", "ADDR": "node-a", "PORT": "29777"})
    assert r.returncode == 0, r.stderr
    assert "node-a:29777" in r.stdout and "--node-rank 1" in r.stdout


def test_deepspeed_without_gpu_is_a_config_error(tiny_model, tmp_path, cli):
    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl"), layout={"deepspeed": "zero3"})
    r = cli("train", str(cfg))
    assert_user_error(r, "needs CUDA GPUs")
    assert not (tmp_path / "runs").exists()
    # ...but a CPU-only login node can still plan a ZeRO job for the GPU nodes.
    r = cli("train", str(cfg), "--print-node-commands")
    assert r.returncode == 0 and "--node-rank 0" in r.stdout, r.stderr


def test_stop_reaches_every_rank(tiny_model, tmp_path, cli):
    """`tunewiz stop` signals one process; all ranks stop at the same step and checkpoint.
    Before that, `tunewiz stacks` shows every rank's Python stack and training carries on."""
    from support.runs import wait_until

    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl", n=24),
                       layout={"master_port": free_port()},
                       **{**LAYOUT, "train__max_steps": 400, "train__save_every": 5, "eval": {"inputs": [], "every": 0}})
    r = cli("train", str(cfg), "--detach", env={"NPROC_PER_NODE": "2"})
    assert r.returncode == 0, r.stderr
    run = Path(r.stdout.strip().splitlines()[-1])
    assert wait_until(lambda: len(rundir.checkpoints(run)) >= 1, 180)
    r = cli("stacks", str(run), "--wait", "3")
    assert r.returncode == 0, r.stderr
    for rank in ("rank0.log", "rank1.log"):  # each worker's stack, down in the training loop
        section = r.stdout.split(f"=== {rank}\n")[1].split("\n=== ")[0]
        assert "most recent call first" in section and "train.py" in section, r.stdout
    assert rundir.run_info(run).status == "running"  # nothing was stopped, torchrun included
    r = cli("stop", str(run), "--wait")
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: json.loads((run / "state.json").read_text()).get("status") == "stopped", 60)
    evs = read_events(run / "events.jsonl")
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "stopped"
    last = max(e["step"] for e in evs if e["type"] == "step")
    assert last < 400 and rundir.checkpoints(run)[-1].name == f"step-{last}"
    assert (rundir.checkpoints(run)[-1] / "rng-rank1.pt").is_file()


def _supervisor_pid(run: Path) -> int | None:
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tunewiz.engine.supervisor" in argv and str(run).encode() in argv:
            return int(proc.name)
    return None


def test_a_killed_supervisor_leaves_the_run_locked_while_its_workers_train(tiny_model, tmp_path, cli):
    """SIGKILL of a torchrun launch's supervisor: its workers train on, so the run stays
    locked (a `--resume` beside them is refused) until they stop."""
    import os
    import signal

    from support.runs import wait_until

    cfg = write_config(tmp_path, tiny_model, write_data(tmp_path / "d.jsonl", n=24),
                       layout={"master_port": free_port()},
                       **{**LAYOUT, "train__max_steps": 400, "train__save_every": 5, "eval": {"inputs": [], "every": 0}})
    r = cli("train", str(cfg), "--detach", env={"NPROC_PER_NODE": "2"})
    assert r.returncode == 0, r.stderr
    run = Path(r.stdout.strip().splitlines()[-1])
    assert wait_until(lambda: len(rundir.checkpoints(run)) >= 1, 180)
    supervisor = _supervisor_pid(run)
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    from tunewiz.engine.contract.processes import pid_alive

    assert wait_until(lambda: not pid_alive(supervisor), 30)
    assert rundir.is_locked(run)  # torchrun holds the supervisor's lock descriptor
    second = cli("train", str(run), "--resume")
    assert second.returncode == 1 and "already being trained" in second.stderr, second.stderr
    assert cli("stop", str(run), "--wait").returncode == 0  # reaches rank 0 all the same
    assert wait_until(lambda: not rundir.is_locked(run), 60)
    assert read_events(run / "events.jsonl")[-1]["status"] == "stopped"


@pytest.mark.parametrize("stage", ["zero1", "zero2", "zero3", "zero2_offload", "zero3_offload"])
def test_deepspeed_config_follows_the_tunewiz_config(stage):
    """One source of truth: batch, accumulation, clipping, precision and optimizer come from
    `train`; only the stage and offload from `layout.deepspeed`."""
    from tunewiz.engine.contract.config import config_from_dict
    from tunewiz.engine.deepspeed_config import deepspeed_config

    cfg = config_from_dict({"name": "t", "model": {"path": "m"}, "data": {"files": ["d.jsonl"]},
                            "train": {"batch_size": 3, "grad_accum": 5, "max_grad_norm": 0.7, "dtype": "bf16",
                                      "lr": 4e-4, "weight_decay": 0.01},
                            "layout": {"gpus": 4, "deepspeed": stage}})
    ds = deepspeed_config(cfg, world_size=4)
    assert ds["train_micro_batch_size_per_gpu"] == 3 and ds["gradient_accumulation_steps"] == 5
    assert ds["train_batch_size"] == 3 * 5 * 4
    assert ds["gradient_clipping"] == 0.7
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    zero = ds["zero_optimization"]
    assert zero["stage"] == int(stage[4])
    offload = stage.endswith("_offload")
    assert ("offload_optimizer" in zero) == offload
    assert ("offload_param" in zero) == (stage == "zero3_offload")
    if offload:  # DeepSpeed's CPU Adam then, with the same hyper-parameters
        assert ds["optimizer"]["params"]["lr"] == 4e-4 and ds["optimizer"]["params"]["weight_decay"] == 0.01
    else:
        assert "optimizer" not in ds  # the engine's own AdamW is handed over
