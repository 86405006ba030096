"""Where a real training process's GPU time goes, with no change to the process itself.

Put this folder first on PYTHONPATH and name a file prefix in TUNEWIZ_BENCH_PROFILE: every
Python process started that way (tunewiz's rank worker, the HF peers of bench_peers.py)
profiles the GPU kernels of the optimizer steps after the first few and writes them, by
GPU time, to PREFIX.PID.txt:

    PYTHONPATH=bench/profile_hook:$PYTHONPATH TUNEWIZ_BENCH_PROFILE=$PWD/prof \\
        python bench/bench_peers.py --workloads full-b16 --sides tunewiz,liger --steps 4 ...

It hooks every optimizer's step through torch's global step hook, so it sees tunewiz and
the peers alike. TUNEWIZ_BENCH_PROFILE_FROM (default 3) optimizer steps are left alone
first (compilation, warm-up), then TUNEWIZ_BENCH_PROFILE_STEPS (default 2) are profiled.
With TUNEWIZ_BENCH_PROFILE_HOST=1 it also records the host side and writes its operators
by CPU time to PREFIX.PID.host.txt: where a step that leaves the GPU idle spends its time.
Without TUNEWIZ_BENCH_PROFILE it does nothing, not even import torch. For the processes it
reaches it stands in for any other sitecustomize module further along the path.
"""

import os
import sys

_PREFIX = os.environ.get("TUNEWIZ_BENCH_PROFILE")


def _install(prefix: str) -> None:
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.profiler import ProfilerActivity, profile

    start = int(os.environ.get("TUNEWIZ_BENCH_PROFILE_FROM", "3"))
    count = int(os.environ.get("TUNEWIZ_BENCH_PROFILE_STEPS", "2"))
    state = {"steps": 0, "profiler": None}
    cuda = torch.cuda.is_available()
    # On a CPU (a check of the hook itself) the table is of CPU operators instead.
    activity, key = (ProfilerActivity.CUDA, "self_cuda_time_total") if cuda else (ProfilerActivity.CPU, "self_cpu_time_total")
    host = os.environ.get("TUNEWIZ_BENCH_PROFILE_HOST") == "1"
    activities = sorted({activity, ProfilerActivity.CPU} if host else {activity}, key=str)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def after_step(optimizer, args, kwargs):
        state["steps"] += 1
        if state["steps"] == start:
            sync()
            state["profiler"] = profile(activities=activities)
            state["profiler"].__enter__()
        elif state["steps"] == start + count and state["profiler"] is not None:
            sync()
            prof, state["profiler"] = state["profiler"], None
            prof.__exit__(None, None, None)
            header = f"{' '.join(sys.argv)[:300]}\n{count} optimizer steps after {start}\n"
            averages = prof.key_averages()
            tables = {"": key, ".host": "self_cpu_time_total"} if host else {"": key}
            for suffix, sort_key in tables.items():
                table = averages.table(sort_by=sort_key, row_limit=60, max_name_column_width=100)
                with open(f"{prefix}.{os.getpid()}{suffix}.txt", "w") as f:
                    f.write(header + table + "\n")

    register_optimizer_step_post_hook(after_step)


if _PREFIX:
    _install(_PREFIX)
