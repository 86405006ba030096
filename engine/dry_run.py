"""`tunewiz train CONFIG --dry-run`: what a run would use, checked before anything is written.

Loads and validates the config, plans the layout, reads the model's config.json and the
data files' sizes, and compares the memory estimate (contract.memory_estimate) with the
GPUs (contract.gpus) or, for a CPU run, this machine's RAM. Nothing is tokenized, loaded or
written; torch is not imported. A run that will not fit is a one-line error naming the
setting to change.
"""

from __future__ import annotations

from pathlib import Path

from .contract import auto_batch
from .contract import memory_estimate as me
from .contract.config import Config, is_model_hub_id, load_config, where
from .contract.errors import ConfigError, ModelError
from .contract.gpus import visible_gpus
from .contract.layout_plan import Plan, make_plan
from .contract.model_facts import ModelFacts, human_count, read_model_facts
from .contract.optional_packages import require_packages

# SmolLM2-135M-Instruct's sizes: the demo model's estimate before `tunewiz demo` has
# converted it (its config.json exists only after that).
DEMO_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 576,
               "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
               "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}


def dry_run(config: str, node_rank: int | None = None, gpu_memory_gib: float | None = None, say=print) -> int:
    if Path(config).is_dir():
        # A run directory (as `--resume` takes): its own config, which holds absolute paths.
        from .contract import rundir

        config = str(Path(config) / rundir.CONFIG)
    cfg = load_config(config)
    here = visible_gpus()
    planning_elsewhere = gpu_memory_gib is not None or (not here and cfg.layout.gpus != "all")
    # On the machine that will train: the same checks as a launch (GPU ids, DeepSpeed
    # without CUDA, missing packages); planning for other machines checks only the config.
    plan = make_plan(cfg, node_rank, launching=not planning_elsewhere)
    on_gpus = plan.devices is not None or gpu_memory_gib is not None
    devices = plan.nproc if on_gpus else 0
    if not planning_elsewhere:
        if cfg.quantized and not on_gpus:
            raise ConfigError(f"{where(cfg, 'method')}: method: qlora needs a CUDA GPU and none is visible",
                              "set method: lora on this machine (same quality, more memory)")
        require_packages(cfg, where=config, cuda=on_gpus)
    say(f"config  {config}: {describe_config(cfg)}")
    say(f"plan    {describe_plan(cfg, plan, on_gpus, here)}")
    facts, note = model_facts(cfg.model.path)
    say(f"model   {note or describe_model(facts)}")
    capacity, device = capacity_of(plan, on_gpus, here, gpu_memory_gib)
    fit = me.check_fit(cfg, facts, devices, capacity, device, world=plan.world_size) if facts else None
    regrouped = None
    if fit is not None and fit.capacity_gib is None:
        say("        no GPU here to check against: --gpu-memory GIB checks the fit for GPUs of that size")
    if fit is None:
        say("memory  unknown: config.json gives no sizes" if facts else "memory  unknown without the model's config.json")
    else:
        say(f"memory  {fit.summary()}")
        for line in fit.estimate.notes:
            say(f"        {line}")
        total, used = ((gpu_memory_gib, 0.0) if gpu_memory_gib is not None
                       else auto_batch.first_gpu_memory(here, plan.devices or []))
        say(f"batch   {auto_batch.preview(cfg, facts, devices, total, used, world=plan.world_size)}")
        regrouped = auto_batch.regrouped_fit(cfg, fit, facts, devices, total, used, capacity, device, plan.world_size)
    say(me.estimate_data(cfg.data.files).describe().replace("data: ", "data    ", 1))
    done = "nothing was written or tokenized (dry run); train with the same command without --dry-run"
    if fit is not None and not fit.fits:
        if regrouped is None:
            key = fit.fixes[0].key if fit.fixes else "train.batch_size"
            raise ConfigError(f"{where(cfg, key)}: {fit.shortfall()}", fit.remedy())
        done = f"as train.auto_batch regroups it (the batch line above); {done}"
    say(f"fits    {done}")
    return 0


def describe_config(cfg: Config) -> str:
    ckpt = "on" if cfg.train.gradient_checkpointing else "off"
    return (f"{cfg.method}, {cfg.stage}, batch {cfg.train.batch_size} x {cfg.data.max_length} tokens "
            f"(x {cfg.train.grad_accum} accumulated), gradient checkpointing {ckpt}")


def describe_plan(cfg: Config, plan: Plan, on_gpus: bool, here) -> str:
    nodes = f"{plan.nnodes} nodes x " if plan.nnodes > 1 else ""
    ds = f"DeepSpeed {cfg.layout.deepspeed}" if cfg.layout.uses_deepspeed else "no DeepSpeed"
    if not on_gpus:
        return f"{nodes}{plan.nproc} process(es) on the CPU (fp32), {ds}"
    names = {g.index: g.name for g in here}
    # Planned for GPUs this machine does not have (--gpu-memory): the first nproc of them.
    ids = plan.devices if plan.devices is not None else list(range(plan.nproc))
    gpus = ", ".join(f"{i} ({names[i]})" if i in names else str(i) for i in ids)
    return f"{nodes}{plan.nproc} process(es), GPU {gpus}; {ds}" + (
        f"; world size {plan.world_size}" if plan.world_size > 1 else "")


def describe_model(facts: ModelFacts) -> str:
    return (f"{facts.path}: {facts.model_type}, {human_count(facts.params)} parameters, "
            f"hidden {facts.hidden}, {facts.layers} layers, vocabulary {facts.vocab:,}")


def model_facts(path: str) -> tuple[ModelFacts | None, str]:
    """The model's config.json facts without fetching or converting anything; (None, why)
    when the sizes are not on this machine. A local path that is no model is an error, as
    in a run."""
    if path == "demo":
        from .contract.cache_dirs import cache_root
        from .contract.samples import DEMO_NAME

        folder = cache_root() / "models" / DEMO_NAME
        if (folder / "config.json").is_file():
            return read_model_facts(folder), ""
        facts = ModelFacts("demo", architecture="LlamaForCausalLM", model_type="llama", hidden=576, layers=30,
                           vocab=49152, intermediate=1536, is_causal_lm=True, config=DEMO_CONFIG)
        from .contract.model_facts import estimate_params

        facts.params = estimate_params(DEMO_CONFIG)
        return facts, "demo (SmolLM2-135M-Instruct, converted on its first run)"
    local = Path(path).expanduser()
    if local.exists() or not is_model_hub_id(path):
        if not (local / "config.json").is_file():
            raise ModelError(f"model path {path} " + ("has no config.json" if local.exists() else "does not exist"),
                             'give a local Hugging Face model folder, or "demo" for the bundled model')
        return read_model_facts(local), ""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None, f"{path}: not downloaded yet"
    cached = try_to_load_from_cache(path, "config.json")
    if isinstance(cached, str):
        return read_model_facts(Path(cached).parent), ""
    return None, f"{path}: not in the Hugging Face cache yet (the run downloads it; `hf download {path}` now)"


def capacity_of(plan: Plan, on_gpus: bool, here, gpu_memory_gib: float | None) -> tuple[float | None, str]:
    """The memory one process may use and what it is: the smallest chosen GPU, --gpu-memory,
    or this machine's RAM for a CPU run."""
    if gpu_memory_gib is not None:
        return gpu_memory_gib, f"a {gpu_memory_gib:g} GiB GPU (--gpu-memory)"
    if not on_gpus:
        # CPU processes share the machine's memory.
        ram = me.ram_gib()
        if ram is None or plan.nproc == 1:
            return ram, "this machine's RAM"
        return ram / plan.nproc, f"this machine's RAM / {plan.nproc} processes"
    chosen = [g for g in here if g.index in (plan.devices or [])]
    if not chosen:
        return None, "the GPUs"
    small = min(chosen, key=lambda g: g.memory_total_mib)
    return small.memory_total_gib, f"GPU {small.index} ({small.name})"

