"""The training recipe: setup -> train -> save_checkpoint -> cleanup, in one readable file.

The hot loop does no Python work per token: sequences are tokenized and packed once in
setup, a step's micro-batches and its trained-token count come from a precomputed plan,
and the only host sync per optimizer step is reading the loss and grad norm for the
``step`` event.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import attention, checkpoint, stop_signal, trackers

from .contract import faults, rundir
from .batches import BatchPlan
from .contract.config import Config, load_config, to_dict
from .contract.events import EventWriter, NullWriter
from .contract.progress_meter import EtaWindow
from .runtime import Runtime


class Recipe:
    def __init__(self, cfg: Config, run: Path, rt: Runtime, events):
        self.cfg, self.run, self.rt, self.events = cfg, run, rt, events
        self.step = 0
        self.stop_requested = False
        self._last_saved = -1
        self.loss_kind = "model"
        self.memory_pressure = MemoryPressure()
        self.compiled = False
        self.float8 = False
        self.host_embedding = None   # the HostEmbedding holding the input table (train.host_embedding)

    # ------------------------------------------------------------------ setup
    def preflight(self) -> None:
        """Everything before the model: a wrong model path fails in a second, and the data is
        read, tokenized and cached (or mapped from the cache) before the weights load and
        before the ranks meet, so bad data fails without touching a GPU. Every rank maps
        the same store; only the node's local rank 0 builds it, the others wait for it."""
        from .dataset import build_dataset
        from .encode import Encoder
        from .models import check_model, load_tokenizer, require_cuda_for_quantization, resolve_model_path
        from .contract.optional_packages import require_packages
        from .contract.progress_meter import ProgressMeter
        from .token_cache import TokenizerSource

        cfg = self.cfg
        self.progress("load", 0, 3)
        self.model_path = resolve_model_path(cfg.model.path)
        check_model(self.model_path, cfg.model.trust_remote_code)
        if cfg.method == "qlora":   # before minutes of tokenizing
            import torch

            require_cuda_for_quantization("cuda" if torch.cuda.is_available() else "cpu")
        # Checked at launch too; here for a run resumed on another machine (or node).
        require_packages(cfg, where=str(self.run / rundir.CONFIG))
        self.tokenizer = load_tokenizer(self.model_path, cfg.model.trust_remote_code)
        self.progress("load", 1, 3)
        self.encoder = Encoder.from_config(self.tokenizer, cfg.data, cfg.stage)
        meter = ProgressMeter("tokenizing", "samples", emit=self.events.emit if self.rt.is_main else None,
                              phase="tokenize", show=self.rt.is_main)
        tokenizer = TokenizerSource(self.tokenizer, folder=Path(self.model_path))
        self.store, self.data_stats = build_dataset(cfg.data, cfg.stage, tokenizer, progress=meter.update,
                                                    encoder=self.encoder, log=self.data_log,
                                                    builder=self.rt.local_rank == 0,
                                                    warn=lambda msg: self.data_log(msg, "warning"))
        # Trained tokens per sequence (the loss normaliser), as plain ints for the step plan.
        self.n_trained = self.store.seq_trained.tolist()

    def setup(self, resume: bool) -> None:
        import torch
        from transformers import get_cosine_schedule_with_warmup

        from .backends import make_backend
        from .models import count_params, load_model, pick_dtype, wrap_for_method

        self.cfg = self._auto_batch(self.cfg)
        cfg, rt = self.cfg, self.rt
        path = self.model_path
        torch.manual_seed(cfg.train.seed)
        self.dtype = pick_dtype(cfg.train.dtype, rt.device)
        self.plan = BatchPlan(len(self.store), cfg.train.batch_size, cfg.train.grad_accum, rt.world_size,
                              cfg.train.seed)
        self.total = self.plan.total_steps(cfg.train.epochs, cfg.train.max_steps)
        if cfg.layout.zero3:
            # Must exist before from_pretrained so the weights load already partitioned.
            from transformers.integrations import HfDeepSpeedConfig

            from .deepspeed_config import deepspeed_config
            self._hf_ds = HfDeepSpeedConfig(deepspeed_config(cfg, rt.world_size))
        model = load_model(cfg, path, rt.device, self.dtype, place=cfg.layout.deepspeed == "none")
        self.attn_backend = "varlen" if attention.uses_lengths(model) else model.config._attn_implementation
        self._say_attention()
        model = wrap_for_method(model, cfg)
        self.params, self.trainable = count_params(model)
        self.host_embedding = self._place_embedding(model)
        self.compiled = self._speed_up(model)
        self.progress("load", 2, 3)

        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                      betas=(0.9, 0.999), fused=rt.device.startswith("cuda"))
        warmup = math.ceil(self.total * cfg.train.warmup_ratio)
        self.loss_kind = self._loss_kind(model)
        self.backend = make_backend(model, optimizer,
                                    lambda opt: get_cosine_schedule_with_warmup(opt, warmup, self.total), cfg, rt,
                                    fused_loss=self.loss_kind == "fused")
        self.resumed_from = None
        if resume:
            ckpts = rundir.checkpoints(self.run)
            if ckpts:
                self.backend.load(ckpts[-1])
                self.step = self._last_saved = checkpoint.load_trainer_state(ckpts[-1])["step"]
                self.resumed_from = str(ckpts[-1])
        self.progress("load", 3, 3)
        self.events.emit(
            "start", name=cfg.name, config=to_dict(cfg), world_size=rt.world_size, total_steps=self.total,
            model=str(path), params=self.params, trainable_params=self.trainable, device=rt.device,
            dtype=self._dtype_name(), attention=self.attn_backend, loss=self.loss_kind,
            compiled=self.compiled, float8=self.float8, host_embedding=self.host_embedding is not None,
            data=self.data_stats,
            truncated=self.data_stats.get("truncated", 0), resumed_from=self.resumed_from, step=self.step,
            auto_batch=asdict(self.batch_choice) if self.batch_choice else None)
        self.log(f"{self.params / 1e6:.1f}M params, {self.trainable / 1e6:.2f}M trainable, "
                 f"{len(self.store)} sequences, {self.total} steps on {rt.device}, {self.attn_backend} attention, "
                 f"{self.loss_kind} loss"
                 + (f", resumed at step {self.step}" if self.resumed_from else ""))

    # ------------------------------------------------------------------ train
    def train(self) -> str:
        """Runs until done or stopped; returns the done status."""
        import torch

        cfg, rt, backend = self.cfg, self.rt, self.backend
        if self.step == 0:
            self.evaluate()
        backend.model.train()
        started, start_step = time.time(), self.step
        self.eta_window = EtaWindow()              # ETA from the recent pace, not from the start
        self.eta_window.add(start_step, started)
        while self.step < self.total:
            if self.should_stop():
                break
            t0 = time.time()
            batches = self.plan.step_batches(self.step)
            trained = sum(self.n_trained[i] for rank in batches for mb in rank for i in mb)
            # Every rank's rows, from the plan (no collective): this rank's count times the
            # world size misstates a step whose ranks got rows of different lengths.
            tokens = sum(self.store.seq_length(i) for rank in batches for mb in rank for i in mb)
            window = max(trained, 1)
            loss_sum = torch.zeros((), device=rt.device)
            mine = batches[rt.rank]
            for k, idxs in enumerate(mine):
                batch = self.collate(idxs)
                with backend.micro_context(last=k == len(mine) - 1):
                    with self.autocast():
                        loss = backend.loss(batch, window)
                    # The model divides the summed loss by the whole step's trained tokens;
                    # gradient averaging across ranks divides by world size, so undo that.
                    backend.backward(loss * rt.world_size)
                loss_sum += loss.detach()
            lr = backend.lr()                  # the rate this step uses; step() moves the schedule on
            grad_norm = backend.step()
            self.step += 1
            rt.sum(loss_sum)
            self.report_step(loss_sum, grad_norm, tokens, trained, t0, started, start_step, lr)
            if self.step == start_step + 1:
                freeze_long_lived_objects()
            if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < self.total:
                self.evaluate()
            if self.step % cfg.train.save_every == 0 and self.step < self.total:
                self.save_checkpoint()
        stopped = self.step < self.total
        if not stopped:
            self.evaluate()
        if self._last_saved != self.step:
            self.save_checkpoint()
        return "stopped" if stopped else "completed"

    def _auto_batch(self, cfg):
        """cfg with the micro-batch and checkpointing contract.auto_batch picks for this GPU's
        free memory (the same sequences per optimizer step). Rank 0 decides and every rank
        takes its answer: ranks that cut a step differently would wait on each other forever."""
        from .contract import auto_batch
        from .contract.model_facts import read_model_facts

        rt = self.rt
        choice = None
        devices = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if rt.device.startswith("cuda") else 0
        if rt.is_main and auto_batch.applies(cfg, devices) is None:
            import torch

            free, _total = torch.cuda.mem_get_info(rt.device)
            facts = read_model_facts(Path(self.model_path))
            choice = auto_batch.choose(cfg, facts, devices, free / 2**30, world=rt.world_size)
        choice = rt.broadcast(choice)
        self.batch_choice = choice
        if choice is not None:
            self.log(choice.describe(cfg))
        elif cfg.train.auto_batch and devices > 0:
            why = auto_batch.applies(cfg, devices) or "no regrouping fits the memory estimate"
            self.log(f"train.auto_batch is on, but {why}: batch_size x grad_accum as written")
        return auto_batch.apply(cfg, choice)

    def _say_attention(self) -> None:
        """A GPU run that `auto` keeps off the varlen kernel says why (packed rows then pay
        for a block mask): the start event alone names the backend, not the reason."""
        if self.cfg.train.attention == "auto" and self.rt.device.startswith("cuda") and self.attn_backend != "varlen":
            why = attention.why_auto_skips_varlen(self.rt.device, self.dtype)
            self.log(f"train.attention: auto runs {self.attn_backend} attention here: {why}")

    def _loss_kind(self, model) -> str:
        """'fused' (fused_loss.py) where it applies, else 'model' (the model's own loss)."""
        from . import fused_loss

        if not self.cfg.train.fused_loss:
            return "model"
        why_not = ("DeepSpeed runs the model's own loss" if self.cfg.layout.deepspeed != "none"
                   else fused_loss.unsupported(model))
        if why_not:
            self.log(f"train.fused_loss is on, but {why_not}: this run uses the model's own loss")
            return "model"
        return "fused"

    def _place_embedding(self, model):
        """train.host_embedding: the HostEmbedding now holding the input table, or None
        where it stays on the GPU (contract/embedding_placement.py says which runs)."""
        from . import host_embedding
        from .contract.embedding_placement import why_embedding_stays_on_gpu

        on_cuda = self.rt.device.startswith("cuda")
        why = why_embedding_stays_on_gpu(self.cfg, on_cuda, on_cuda and host_embedding.tied(model))
        if why is None and not host_embedding.movable(model):
            why = "this model's input embedding is not a plain frozen nn.Embedding"
        if why is not None:
            if why and self.cfg.train.host_embedding and self.cfg.uses_adapter:
                self.log(f"train.host_embedding: the input embedding stays on the GPU: {why}")
            return None
        host = host_embedding.keep_on_host(model, self.rt.device)
        self.log(f"input embedding table in host memory ({host.table.numel() * host.table.element_size() / 2**30:.2f} "
                 f"GiB off the GPU; train.host_embedding: false keeps it there)")
        return host

    def _speed_up(self, model) -> bool:
        """The step_speed settings that apply to this run; True when layers were compiled."""
        from . import step_speed

        if self.uses_autocast() and self.cfg.method == "lora":
            step_speed.skip_adapter_input_casts(model)
        cfg = self.cfg
        on, why_not = step_speed.should_compile(cfg.train.compile, self.rt.device, cfg.layout.deepspeed,
                                                self.rt.world_size)
        if not on:
            auto_why = (step_speed.auto_skips(self.rt.device, cfg.layout.deepspeed, self.rt.world_size)
                        if cfg.train.compile == "auto" else "")
            if why_not:
                self.log(f"train.compile is on, but {why_not}: this run trains uncompiled", level="warning")
            elif auto_why:  # a GPU run that the default leaves uncompiled says so (the start event too)
                self.log(f"train.compile: auto leaves this run uncompiled: {auto_why}")
            self._float8(model, compiled=False)   # says why a run that asked for FP8 has none
            return False
        self.float8 = self._float8(model, compiled=True)
        n = step_speed.compile_layers(model)
        self.log(f"compiling {n} layers (the first steps include the compile)")
        return n > 0

    def _float8(self, model, compiled: bool) -> bool:
        """train.float8, before the layers are compiled; True when the decoder products now
        run in FP8."""
        import importlib.util

        import torch

        from . import step_speed

        setting = self.cfg.train.float8
        on_cuda = self.rt.device.startswith("cuda") and torch.cuda.is_available()
        capability = torch.cuda.get_device_capability(self.rt.device) if on_cuda else None
        on, why_not = step_speed.should_float8(setting, self.cfg.method, compiled, capability,
                                               importlib.util.find_spec("torchao") is not None)
        if not on:
            if why_not and setting is True:
                self.log(f"train.float8 is on, but {why_not}: this run trains in {self._dtype_name()}",
                         level="warning")
            elif why_not and capability is not None:   # a CPU run was never meant to have FP8
                self.log(f"train.float8: auto keeps {self._dtype_name()} products: {why_not}")
            return False
        n = step_speed.float8_linears(model)
        self.log(f"FP8 matrix products in {n} decoder Linear layers (torchao float8, "
                 f"{step_speed.FLOAT8_RECIPE} scaling; train.float8: false keeps {self._dtype_name()})")
        return n > 0

    def _dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def should_stop(self) -> bool:
        """Every rank must stop at the same step, and a signal reaches one process only."""
        if not self.rt.distributed:
            return self.stop_requested
        import torch

        flag = torch.tensor(float(self.stop_requested), device=self.rt.device)
        return self.rt.sum(flag).item() > 0

    def collate(self, idxs: list[int]) -> dict:
        from .packing import collate

        # Compiled layers get one batch shape and one length bound, so they compile once: an
        # epoch's short last batch would otherwise recompile every layer (seconds each).
        fixed = self.cfg.data.max_length if self.compiled else None
        rows = self.cfg.train.batch_size if self.compiled else None
        seqs = [self.store[i] for i in idxs]
        batch = collate(seqs, self.tokenizer.pad_token_id, width=fixed, rows=rows)
        varlen = self.attn_backend == "varlen"
        if varlen:
            batch.update(attention.sample_lengths(batch["position_ids"], bound=fixed))  # on the CPU: no sync
        if self.loss_kind == "fused":
            from .fused_loss import trained_rows

            batch.update(trained_rows(batch["labels"]))  # on the CPU too
        if self.host_embedding is not None:
            # Looked up here, on the CPU, and sent with the batch: no sync, no table on the GPU.
            batch["inputs_embeds"] = self.host_embedding.lookup(batch.pop("input_ids"))
        out = {k: v.to(self.rt.device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}
        if self.compiled and varlen:
            import torch._dynamo

            # The sample count changes every batch: compile for any, not for the first one seen.
            torch._dynamo.mark_dynamic(out[attention.LENGTH_KEYS[0]], 0)
        return out

    def uses_autocast(self) -> bool:
        """LoRA keeps fp32 adapters on a bf16/fp16 base; full training runs in the model's
        own dtype, and DeepSpeed handles precision itself."""
        import torch

        return (self.rt.device.startswith("cuda") and self.dtype != torch.float32 and self.cfg.method != "full"
                and self.cfg.layout.deepspeed == "none")

    def autocast(self):
        import torch

        return torch.autocast("cuda", dtype=self.dtype) if self.uses_autocast() else contextlib.nullcontext()

    def report_step(self, loss_sum, grad_norm, tokens, trained, t0, started, start_step, lr) -> None:
        """The step event. `tokens` are every rank's (padding excluded), `trained` every rank's
        trained targets, `t0` the host clock when the step began, `lr` the rate it trained at."""
        loss = float(loss_sum)  # the one host sync per optimizer step
        # Timed after that sync: the GPU has finished the step, so the rate is the wall-clock
        # one (timed before it, queued kernels made the rate read up to 1.3x too high).
        dt = max(time.time() - t0, 1e-9)
        self.eta_window.add(self.step, time.time())
        ev = dict(step=self.step, total=self.total, epoch=round(self.plan.epoch_of(self.step), 4),
                  loss=round(loss, 6), lr=lr, grad_norm=round(float(grad_norm), 6),
                  tokens_per_s=round(tokens / dt, 1),
                  mem_gib=round(self.rt.peak_memory_gib(), 3), eta_s=round(self.eta_window.eta(self.total) or 0.0, 1),
                  tokens=tokens, trained_tokens=trained, trained_tokens_per_s=round(trained / dt, 1))
        self.events.emit("step", **ev)
        warning = self.memory_pressure.check(self.step, self.rt.alloc_retries)
        if warning:
            self.log(warning, level="warning")
        if self.rt.is_main:
            print(f"step {self.step}/{self.total} loss {loss:.4f} lr {ev['lr']:.2e} "
                  f"grad_norm {ev['grad_norm']:.3f} {ev['tokens_per_s']:.0f} tok/s eta {ev['eta_s']:.0f}s", flush=True)

    # ------------------------------------------------------------------ eval
    def evaluate(self) -> None:
        """Answer the eval prompts; under ZeRO-3 every rank takes part (weights are sharded)."""
        if not self.cfg.eval.inputs:
            return
        if not self.backend.generates():
            self.rt.barrier()
            return
        from .generate import completion_ids, stream_reply
        from .step_speed import eager

        model = self.backend.module
        was_training = model.training
        model.eval()
        samples = []
        for prompt in self.cfg.eval.inputs:
            if self.cfg.stage == "pretrain":
                ids = completion_ids(self.tokenizer, prompt)
            else:
                ids = self.encoder.prompt_ids([{"role": "user", "content": prompt}])
            # The same autocast as the training forward: the adapters take their input
            # uncast (step_speed), and bf16 generation is the faster one anyway.
            with eager() if self.compiled else contextlib.nullcontext(), self.autocast():
                text = "".join(stream_reply(model, self.tokenizer, ids, self.cfg.eval.max_new_tokens,
                                            stop_token_ids=self.encoder.stop_token_ids,
                                            stop_words=self.encoder.stop_words,
                                            agree=self.rt.agree if self.backend.sharded else None))
            samples.append({"input": prompt, "output": text})
        if was_training:
            model.train()
        if not self.backend.sharded:
            self.rt.barrier()  # releases the ranks that waited instead of generating
        if not self.rt.is_main:
            return
        self.events.emit("eval", step=self.step, samples=samples)
        out = rundir.eval_answers(self.run, self.step)
        out.parent.mkdir(exist_ok=True)
        out.write_text("".join(f"### {s['input']}\n{s['output']}\n\n" for s in samples), encoding="utf-8")

    # ------------------------------------------------------------------ checkpoint
    def save_checkpoint(self) -> None:
        path = checkpoint.save(self.run, self.step, self.backend, self.rt,
                               {"total": self.total, "method": self.cfg.method,
                                "epoch": self.plan.epoch_of(self.step)},
                               keep=self.cfg.train.save_total_limit)
        self._last_saved = self.step
        self.events.emit("checkpoint", step=self.step, path=str(path))

    # ------------------------------------------------------------------ helpers
    def progress(self, phase: str, done: int, total: int) -> None:
        self.events.emit("progress", phase=phase, done=done, total=total)

    def data_log(self, msg: str, level: str = "info") -> None:
        """Data messages are printed by every rank (a waiting rank says why, in its own log)."""
        self.events.emit("log", level=level, msg=msg)
        print(msg, flush=True)

    def log(self, msg: str, level: str = "info") -> None:
        self.events.emit("log", level=level, msg=msg)
        if self.rt.is_main:
            print(msg, flush=True)


def freeze_long_lived_objects() -> None:
    """After the first step (model, optimizer, compiled graphs all built): collect once,
    then move every object alive to the collector's permanent generation. A full
    collection otherwise walks them all (700k+ objects once layers are compiled: over a
    second on a slow CPU) whenever it runs, stalling whichever step it lands in."""
    import gc

    gc.collect()
    gc.freeze()


class MemoryPressure:
    """Says so, once, when the GPU allocator starts running out of memory mid-training: the
    run goes on, but each retry stalls the device, which shows only as a slow run."""

    def __init__(self):
        self.warned = False

    def check(self, step: int, read_retries) -> str | None:
        """read_retries() gives the allocator's retry count; it is not asked again after
        the warning, so a warned run pays nothing per step."""
        if self.warned:
            return None
        retries = read_retries()
        if retries == 0:
            return None
        self.warned = True
        return (f"GPU memory ran short by step {step}: the allocator emptied its cache and retried "
                f"{retries} time(s), which stalls every step that does it. Lower train.batch_size or "
                "data.max_length, or turn on train.gradient_checkpointing")


def run_training(run: Path, resume: bool = False) -> int:
    """Train the run in ``run`` (its config.yaml), writing events; returns an exit code.
    The caller holds the run's lock (launch.py); torchrun workers run under the supervisor
    that holds it."""
    run = Path(run)
    rt = Runtime.from_env()
    stop_signal.install(announce=rt.is_main)  # before anything slow: an early stop is kept
    if rt.distributed:
        _log_to(run / rundir.LOGS / f"rank{rt.rank}.log")
    events = NullWriter()
    recipe = None
    status, code, final = "failed", 1, None
    try:
        events = EventWriter(run / rundir.EVENTS) if rt.is_main else NullWriter()
        if rt.is_main:
            rundir.mark_running(run)
        faults.point("load.start")
        cfg = load_config(run / rundir.CONFIG)
        if rt.is_main:  # the trackers get the events as they are written, so only rank 0 logs
            events = trackers.with_trackers(events, cfg.train.report_to, run)
        recipe = Recipe(cfg, run, rt, events)
        _install_stop_handlers(recipe)
        if not _stops_before_training(recipe):
            recipe.preflight()
            faults.point("load.data")
        if _stops_before_training(recipe):
            # Asked to stop before the model loaded: nothing new to checkpoint. (Ranks of a
            # torchrun launch agree on the stop in the step loop instead.)
            status = "stopped"
        else:
            rt.select_device()
            rt.init_distributed(int(os.environ.get("TUNEWIZ_JOIN_TIMEOUT_S", cfg.layout.join_timeout_s)),
                                deepspeed=cfg.layout.deepspeed != "none")
            # Checkpoints go to rank 0's run directory (shared storage across nodes).
            recipe.run = Path(rt.broadcast(str(run)))
            recipe.setup(resume)
            faults.point("load.model")
            status = recipe.train()
        code = 0
        final = str(rundir.checkpoints(run)[-1]) if rundir.checkpoints(run) else None
    except BaseException as e:  # noqa: BLE001 - every failure must end as an error event
        status = "failed"
        code = report_failure(e, events, run)
    finally:
        faults.point("done.before")
        # The last words go out even on a full disk, where they may not fit: try, never raise.
        events.try_emit("done", status=status, path=final)
        if rt.is_main:
            with contextlib.suppress(Exception):
                rundir.write_state(run, status=status, updated=time.time())
        events.close()
        rt.shutdown()
    return code


def _stops_before_training(recipe: Recipe) -> bool:
    return recipe.stop_requested and not recipe.rt.distributed


def _log_to(path: Path) -> None:
    """Each rank's stdout and stderr (tracebacks included) go to its own file in logs/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def report_failure(e: BaseException, events, run: Path) -> int:
    """Turn an exception into an error event and an exit code (1: user error, 3: bug).
    Nothing here may raise: on a full disk the event and even stderr (a log file on that
    disk) can fail, and the run must still end with its one line and exit code."""
    import traceback

    from .contract.errors import OOMError, TunewizError, disk_full, is_disk_full

    where = oom_where(e)
    if where == "GPU":
        e = OOMError("out of GPU memory",
                     "try a smaller train.batch_size or data.max_length, train.gradient_checkpointing: true, "
                     "method: qlora, or a higher layout.deepspeed stage / offload; then `tunewiz train RUN --resume`")
    elif where == "RAM":
        e = OOMError("out of memory (RAM) while training on the CPU",
                     "try a smaller train.batch_size or data.max_length, train.gradient_checkpointing: true, "
                     "or a smaller model; `tunewiz train CONFIG --dry-run` estimates the memory; "
                     "then `tunewiz train RUN --resume`")
    elif is_disk_full(e) and not isinstance(e, TunewizError):
        e = disk_full(getattr(e, "filename", None) or run, f"`tunewiz train {run} --resume`")
    if isinstance(e, TunewizError):
        events.try_emit("error", kind=e.kind, msg=e.msg, hint=e.hint)
        _say(f"tunewiz: error: {e.one_line()}")
        return 1
    if isinstance(e, KeyboardInterrupt):
        events.try_emit("error", kind="internal", msg="interrupted", hint="resume with `tunewiz train RUN --resume`")
        return 130
    with contextlib.suppress(Exception):
        traceback.print_exc()
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    events.try_emit("error", kind="internal", msg=f"{type(e).__name__}: {first}",
                    hint=f"this is a bug; the traceback is in {run / rundir.LOGS}")
    return 3


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def oom_where(e: BaseException) -> str | None:
    """'GPU' or 'RAM' when e is a failed allocation there, else None. torch's CPU allocator
    says "DefaultCPUAllocator: can't allocate memory", not "out of memory"."""
    if type(e).__name__ == "OutOfMemoryError" or (isinstance(e, RuntimeError) and "out of memory" in str(e)):
        return "GPU"
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "DefaultCPUAllocator" in str(e)):
        return "RAM"
    return None


def _install_stop_handlers(recipe: Recipe) -> None:
    """SIGTERM / first Ctrl-C: finish the step, checkpoint, exit cleanly. Second Ctrl-C: abort.
    The handlers are stop_signal's, installed at the start of run_training (a request that
    came before the recipe existed is passed on here)."""
    stop_signal.install(announce=recipe.rt.is_main)
    stop_signal.on_stop(lambda: setattr(recipe, "stop_requested", True))
