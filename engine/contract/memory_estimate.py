"""How much memory a run will take at its peak, per device, before anything is loaded.

The figure predicted is what the run's step events report as `mem_gib`: on a GPU
`torch.cuda.max_memory_allocated`, on the CPU the process's peak resident memory. Whether a
run fits the device also counts what that figure leaves out (the CUDA context, the caching
allocator's slack): `MemoryEstimate.needed_gib`.

The model, per device (every size from config.json through contract.model_facts):

- weights: the compute dtype (bf16/fp16 on GPUs, fp32 on the CPU, as engine/models.py
  picks it); QLoRA packs the decoder's linear layers into 4 bits (NF4, 0.5 byte per weight
  plus its quantization constants) and keeps embeddings, output layer and norms in bf16;
- what trains: LoRA adapters are fp32 (peft upcasts them) with fp32 grads and AdamW's two
  fp32 moments; full fine-tuning keeps weights, grads and AdamW moments in the model's own
  dtype without DeepSpeed (torch's AdamW follows the parameter dtype), and bf16 weights and
  grads with fp32 master weights and moments under DeepSpeed, split over the GPUs by the
  ZeRO stage;
- activations per token and layer, from what autograd keeps for the backward pass of a
  Llama-style layer (see `_layer_bytes`), smaller when the layers are compiled; with
  gradient checkpointing (per layer, as tunewiz does) only each layer's input is kept, and
  one layer is recomputed at a time;
- the loss: tunewiz's fused loss (engine/fused_loss.py) holds one chunk of logits at a time,
  never [tokens x vocab]; the model's own loss (DeepSpeed, other architectures) does.

The coefficients are named constants below, each with where it comes from; the calibration
figures are in docs/memory.md and bench/bench_memory.py measures them again.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import Config
from .embedding_placement import why_embedding_stays_on_gpu
from .model_facts import ModelFacts

GIB = 1024**3

# --- weights -------------------------------------------------------------------------
# NF4/FP4: two weights per byte, plus one fp32 absmax per block of 64 weights; double
# quantization stores those absmax values in 8 bits with one fp32 constant per 256 blocks
# (bitsandbytes' defaults, which quant_config in engine/models.py keeps).
QUANT_BLOCK = 64
QUANT_4BIT_BYTES = 0.5 + 4 / QUANT_BLOCK
QUANT_4BIT_DOUBLE_BYTES = 0.5 + 1 / QUANT_BLOCK + 4 / (QUANT_BLOCK * 256)
QUANT_8BIT_BYTES = 1.0 + 4 / 4096          # LLM.int8: one byte per weight, fp32 row scales
# bitsandbytes dequantizes one weight matrix at a time for its matmul (compute dtype).
QUANT_DEQUANT_MATRICES = 1

# --- what trains ---------------------------------------------------------------------
# LoRA adapters: fp32 weight + fp32 grad + AdamW's two fp32 moments, and the bf16 copy
# autocast makes of each adapter weight, kept for the backward pass (uncheckpointed).
ADAPTER_BYTES = 4 + 4 + 8
ADAPTER_AUTOCAST_COPY_BYTES = 2
# DeepSpeed (bf16/fp16 enabled): the weights and grads in 16 bits, plus fp32 master
# weights and two fp32 AdamW moments (12 bytes) that ZeRO partitions (the ZeRO paper's
# 2 + 2 + 12 bytes per parameter).
DS_WEIGHT_BYTES, DS_GRAD_BYTES, DS_OPTIMIZER_BYTES = 2, 2, 12
# torch DDP without gradient_as_bucket_view: its buckets are one more copy of the grads.
DDP_BUCKET_COPIES = 1
# ZeRO-3 gathers each layer's weights while it computes, and keeps gathered weights that
# are used again soon (the backward pass, the recomputation) up to
# stage3_max_live_parameters, DeepSpeed's default 1e9, which engine/deepspeed_config.py
# leaves as it is. Fits the 2-GPU ZeRO-3 runs of docs/gpu.md (full and LoRA) within 4%.
ZERO3_MAX_LIVE_PARAMETERS = 1e9

# --- activations ---------------------------------------------------------------------
# Compiled layers keep fewer tensors for the backward pass than eager ones (the compiler
# recomputes cheap element-wise results). Fitted on one H200, InternLM2-1.8B shape,
# batch 4 x 2,048 (docs/bench.md): LoRA 26.1 GiB compiled / 32.4 uncompiled, full
# 27.3 compiled / 34.0 uncompiled; the uncompiled figures match `_layer_bytes` within 3%.
COMPILED_ACTIVATION_FACTOR = {"full": 0.71, "adapter": 0.80}
# The gradients a layer's backward pass holds at once: the hidden-state gradient in and
# out, and the MLP's two intermediate gradients (elements per token: 2h + 2I).
BACKWARD_SCRATCH_H, BACKWARD_SCRATCH_I = 2, 2
# The CPU's SDPA with a mask (packed rows) runs the math kernel: fp32 scores and their
# softmax, [heads x seq x seq] per row, are kept per layer. Not yet measured.
CPU_ATTENTION_SCORE_BYTES = 8

# --- the loss ------------------------------------------------------------------------
# engine/fused_loss.py: per chunk, logits in the compute dtype beside their fp32 softmax
# (2 + 4 bytes per logit); CHUNK_ELEMENTS / TRAINED_HEAD_CHUNK_ELEMENTS as there. A
# trained output layer also sums its gradient in fp32 and keeps it in the weight dtype.
FUSED_CHUNK_ELEMENTS = 2**25
FUSED_TRAINED_HEAD_CHUNK_ELEMENTS = 2**27
FUSED_BYTES_PER_LOGIT = 6
# Architectures the fused loss applies to (engine/fused_loss.py ARCHITECTURES; a test
# keeps the two equal).
FUSED_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3", "internlm2", "internlm3", "yi"})
# transformers' own loss: bf16 logits, their fp32 copy and the log-softmax held at once
# (2 + 4 + 4 bytes per token x vocab). Fits the 2-GPU ZeRO runs of docs/gpu.md within 5%.
MODEL_LOSS_BYTES_PER_LOGIT = 10
# In fp32 (the CPU) the copy is the logits themselves: logits, log-softmax, their grads.
MODEL_LOSS_BYTES_PER_LOGIT_FP32 = 12

# --- outside the allocator's count ---------------------------------------------------
# The CUDA context, cuBLAS workspaces and kernels: 0.5-0.7 GiB on H100/H200 with torch 2.x,
# never in max_memory_allocated.
CUDA_CONTEXT_GIB = 0.6
# The caching allocator reserves more than it hands out (block rounding, fragmentation).
ALLOCATOR_SLACK = 0.08
# A CPU process's resident memory besides the model: Python, torch, transformers, peft, the
# tokenizer (tiny-model CPU runs peak at 0.52-0.55 GiB).
CPU_PROCESS_BASE_GIB = 0.5
# The checkpoint on the CPU: a checkpoint already in fp32 is not copied, its memory-mapped
# pages are the weights (counted once, in "model"); one in another dtype is converted into
# an fp32 copy while its pages are mapped, and unmapped once loaded. So the checkpoint adds
# to the peak only while loading, when that moment is above the training's own peak
# (measured on the demo model: fp32 checkpoint 0.60 GiB file-backed and 0.26 anonymous
# after a forward pass; the same weights from a bf16 checkpoint 0.77 anonymous, 0.09
# file-backed, 1.09 at the load's peak).
CPU_CHECKPOINT_BYTES = {"float32": 0, "float16": 2, "bfloat16": 2}
# What the CPU keeps beyond `_layer_bytes` (fp32): freed activations that the C allocator
# does not hand back between micro-batches. Fitted on the demo model, LoRA batch 4 and 8 x
# 256 and the demo preset's run (docs/memory.md).
CPU_ACTIVATION_FACTOR = 1.25
# With gradient checkpointing on the CPU, each layer's recomputed activations are freed
# after its backward pass, but glibc's heap does not hand all of that memory to the next
# layer's recomputation (the gradients allocated in between split the freed blocks), so
# the peak also holds this fraction of what every layer would keep without checkpointing.
# The same demo-model run (LoRA, 8 x 256) peaks at 1.66 GiB with a fixed mmap threshold
# (MALLOC_MMAP_THRESHOLD_=131072: freed blocks go back to the system) and at 4.56 without.
# Fitted on five checkpointed demo-model runs, LoRA batch 1, 2, 4 and full batch 2, 4 x 256
# (docs/memory.md).
CPU_RECOMPUTE_KEPT = 0.25

# --- the data ------------------------------------------------------------------------
# engine/token_store.py: int32 ids + a uint8 trained mask per token, plus the indexes;
# memory-mapped, so it is page cache that the kernel can drop, not process memory.
STORE_BYTES_PER_TOKEN = 5
# Data-file bytes per token, to guess the token count before tokenizing: the sample
# assistant set (JSON, English and Chinese) is 2.4 bytes per token with the demo tokenizer,
# English prose runs at about 4.
FILE_BYTES_PER_TOKEN = 3
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow", ".csv", ".tsv")


@dataclass
class Shape:
    """A decoder-only transformer's sizes, as config.json gives them."""

    hidden: int
    layers: int
    vocab: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool = False
    model_type: str = "?"

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of every linear layer of one decoder layer."""
        h, i = self.hidden, self.intermediate
        return {"q": (h, self.q_dim), "k": (h, self.kv_dim), "v": (h, self.kv_dim), "o": (self.q_dim, h),
                "gate": (h, i), "up": (h, i), "down": (i, h)}

    @property
    def layer_params(self) -> int:
        return sum(a * b for a, b in self.projections().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        # Norm weights are a few thousand per layer: left out, as estimate_params does.
        return self.layers * self.layer_params + self.embedding_params


def shape_of(facts: ModelFacts) -> Shape | None:
    cfg = facts.config or {}
    hidden = facts.hidden or cfg.get("hidden_size") or 0
    layers = facts.layers or cfg.get("num_hidden_layers") or 0
    vocab = facts.vocab or cfg.get("vocab_size") or 0
    if not (hidden and layers and vocab):
        return None
    heads = cfg.get("num_attention_heads") or 1
    head_dim = cfg.get("head_dim") or hidden // heads
    return Shape(hidden=hidden, layers=layers, vocab=vocab, intermediate=facts.intermediate or 4 * hidden,
                 heads=heads, kv_heads=cfg.get("num_key_value_heads") or heads, head_dim=head_dim,
                 tied=bool(cfg.get("tie_word_embeddings")), model_type=facts.model_type)


# Module names of LoRA targets, per projection (Llama/Qwen/Mistral names, InternLM2's, GPT-2's).
_TARGET_NAMES = {"q_proj": ("q",), "k_proj": ("k",), "v_proj": ("v",), "o_proj": ("o",),
                 "gate_proj": ("gate",), "up_proj": ("up",), "down_proj": ("down",),
                 "wqkv": ("q", "k", "v"), "wo": ("o",), "w1": ("gate",), "w3": ("up",), "w2": ("down",),
                 "qkv_proj": ("q", "k", "v"), "gate_up_proj": ("gate", "up"),
                 "c_attn": ("q", "k", "v"), "c_proj": ("o",), "c_fc": ("up",)}


def lora_targets(target) -> set[str]:
    if target == "all-linear" or target == ["all-linear"]:
        return {"q", "k", "v", "o", "gate", "up", "down"}
    names = [target] if isinstance(target, str) else list(target)
    return {p for n in names for p in _TARGET_NAMES.get(str(n).rsplit(".", 1)[-1], ())}


def lora_params(shape: Shape, r: int, target="all-linear") -> int:
    """r x (in + out) for every adapted projection of every layer."""
    proj = shape.projections()
    return shape.layers * sum(r * (proj[p][0] + proj[p][1]) for p in lora_targets(target))


@dataclass
class Situation:
    """Where and how the run trains: what the estimate depends on beyond the config."""

    devices: int = 1            # GPUs the run uses (processes); 0 = the CPU
    compiled: bool = False
    fused_loss: bool = True

    @property
    def on_cpu(self) -> bool:
        return self.devices == 0


def situation(cfg: Config, facts: ModelFacts, devices: int) -> Situation:
    """What the engine will decide for this config on `devices` GPUs (0: the CPU):
    engine/step_speed.py's compile rule and engine/train.py's fused-loss rule."""
    cuda = devices > 0
    ds = cfg.layout.deepspeed
    compiled = bool(cfg.train.compile) and cuda and ds == "none" and not (cfg.train.compile == "auto" and devices > 1)
    fused = cfg.train.fused_loss and ds == "none" and facts.model_type in FUSED_ARCHITECTURES
    return Situation(devices=devices, compiled=compiled, fused_loss=fused)


@dataclass
class MemoryEstimate:
    parts: dict[str, float]     # GiB per part, in the order described
    on_cpu: bool
    devices: int
    world: int                  # processes over every node (ZeRO splits over these)
    notes: list[str] = field(default_factory=list)

    @property
    def peak_gib(self) -> float:
        """What the step events will report as mem_gib (max_memory_allocated / peak RSS)."""
        return sum(self.parts.values())

    @property
    def needed_gib(self) -> float:
        """What must be free on the device: the peak plus what the allocator's count misses."""
        if self.on_cpu:
            return self.peak_gib
        return self.peak_gib * (1 + ALLOCATOR_SLACK) + CUDA_CONTEXT_GIB

    def describe(self) -> str:
        where = "of RAM (CPU training, fp32)" if self.on_cpu else "per GPU"
        parts = ", ".join(f"{k} {v:.1f}" for k, v in self.parts.items() if v >= 0.05)
        return f"≈ {self.peak_gib:.1f} GiB {where}: {parts}"


def estimate(cfg: Config, facts: ModelFacts, devices: int, world: int | None = None,
             where: Situation | None = None) -> MemoryEstimate | None:
    """The peak per device for cfg on `devices` GPUs of this node (0: the CPU); `world`
    is the number of processes over every node (default: devices x layout.nnodes).
    None when config.json lacks the sizes."""
    shape = shape_of(facts)
    if shape is None:
        return None
    where = where or situation(cfg, facts, devices)
    world = world or max(1, devices) * cfg.layout.nnodes
    on_cpu = where.on_cpu
    dtype_bytes = 4 if on_cpu or cfg.train.dtype == "fp32" else 2
    ds = cfg.layout.deepspeed if not on_cpu else "none"
    adapter = cfg.uses_adapter
    quantized = cfg.quantized and not on_cpu
    parts: dict[str, float] = {}
    notes: list[str] = []

    # Weights and what trains.
    linear = shape.layers * shape.layer_params
    lora = lora_params(shape, cfg.lora.r, cfg.lora.target) if adapter else 0
    if quantized:
        per = QUANT_8BIT_BYTES if cfg.quant.bits == 8 else (
            QUANT_4BIT_DOUBLE_BYTES if cfg.quant.double_quant else QUANT_4BIT_BYTES)
        weights = linear * per + shape.embedding_params * 2
    else:
        weights = shape.params * dtype_bytes
    if ds != "none":
        # ZeRO stage 1 splits the optimizer states over the processes, 2 the grads too, 3
        # the weights too; offload moves the optimizer states (and with stage 3 the
        # weights) to host RAM.
        stage, offload = cfg.layout.zero_stage, cfg.layout.offloads
        w, g, o = DS_WEIGHT_BYTES, DS_GRAD_BYTES, (0 if offload else DS_OPTIMIZER_BYTES)
        if offload:
            notes.append("optimizer states in host RAM (offload)")
        g = g / world if stage >= 2 else g
        o = o / world
        w_share = (0 if offload else w / world) if stage == 3 else w
        trainable = lora if adapter else shape.params
        if adapter:
            weights = weights / world if stage == 3 else weights
            state = trainable * (w_share + g + o)
        else:
            weights = shape.params * w_share
            state = trainable * (g + o)
        if stage == 3:
            # the gathered weights kept for their next use
            weights += min(ZERO3_MAX_LIVE_PARAMETERS, shape.params) * w
    elif adapter:
        # Checkpointed layers keep no autocast copies: the recomputation makes its own.
        autocast = not on_cpu and dtype_bytes == 2 and not cfg.train.gradient_checkpointing
        state = lora * (ADAPTER_BYTES + (ADAPTER_AUTOCAST_COPY_BYTES if autocast else 0))
    else:
        # grads + AdamW's two moments, in the model's dtype (the weights are counted above).
        # The grads are None from zero_grad(set_to_none) until the backward pass, whose
        # start is the peak, so only a few are there while every activation still is; the
        # moments stay all the time.
        state = shape.params * dtype_bytes * 2
    if ds == "none" and world > 1:
        # DDP's buckets (engine/backends.py leaves gradient_as_bucket_view off) hold a second
        # copy of every gradient for the all-reduce.
        state += (lora * 4 if adapter else shape.params * dtype_bytes) * DDP_BUCKET_COPIES
    if why_embedding_stays_on_gpu(cfg, not on_cpu, shape.tied) is None:
        weights -= shape.vocab * shape.hidden * (2 if quantized else dtype_bytes)
        notes.append("input embedding in host memory (train.host_embedding)")
    parts["model"] = weights / GIB
    parts["adapter" if adapter else "grads+optimizer"] = state / GIB

    # Activations.
    rows, seq = cfg.train.batch_size, cfg.data.max_length
    tokens = rows * seq
    kind = "adapter" if adapter else "full"
    scale = dtype_bytes / 2
    layer = _layer_bytes(shape, cfg, trainable_base=not adapter, on_cpu=on_cpu) * scale
    if where.compiled:
        layer *= COMPILED_ACTIVATION_FACTOR[kind]
    if on_cpu:
        layer *= CPU_ACTIVATION_FACTOR
    if on_cpu and cfg.data.pack:
        layer += shape.heads * seq * CPU_ATTENTION_SCORE_BYTES     # per token: one row of scores
    scratch = (BACKWARD_SCRATCH_H * shape.hidden + BACKWARD_SCRATCH_I * shape.intermediate) * dtype_bytes * tokens
    if quantized:
        scratch += QUANT_DEQUANT_MATRICES * max(a * b for a, b in shape.projections().values()) * 2
    if cfg.train.gradient_checkpointing:
        kept = shape.layers * shape.hidden * dtype_bytes * tokens   # every layer's input
        recompute = layer * tokens
        if on_cpu:
            recompute += CPU_RECOMPUTE_KEPT * shape.layers * layer * tokens
        activations = kept + recompute + scratch
    else:
        activations = shape.layers * layer * tokens + scratch
    parts["activations"] = activations / GIB

    # The loss.
    head_trains = not adapter
    if where.fused_loss:
        chunk = FUSED_TRAINED_HEAD_CHUNK_ELEMENTS if head_trains else FUSED_CHUNK_ELEMENTS
        loss = min(chunk, tokens * shape.vocab) * FUSED_BYTES_PER_LOGIT
        loss += tokens * shape.hidden * (4 + dtype_bytes)     # fp32 hidden-state grad, the picked rows
        if head_trains:
            loss += shape.vocab * shape.hidden * (4 + dtype_bytes * 2)   # fp32 sum, the product, the result
    else:
        per = MODEL_LOSS_BYTES_PER_LOGIT if dtype_bytes == 2 else MODEL_LOSS_BYTES_PER_LOGIT_FP32
        loss = tokens * shape.vocab * per
    parts["loss"] = loss / GIB
    if on_cpu:
        # Loading a converted checkpoint holds its pages beside the fp32 weights; training
        # holds the weights beside everything else: the peak is the larger of the two.
        loading = shape.params * CPU_CHECKPOINT_BYTES.get(facts.dtype, 2) / GIB
        training = sum(v for k, v in parts.items() if k != "model")
        parts["process"] = CPU_PROCESS_BASE_GIB + max(0.0, loading - training)
    return MemoryEstimate(parts, on_cpu, devices, world, notes)


def _layer_bytes(shape: Shape, cfg: Config, trainable_base: bool, on_cpu: bool = False) -> float:
    """Bytes one decoder layer keeps for the backward pass, per token, in a 16-bit compute
    dtype, uncompiled: what autograd saves in a Llama-style layer (HF RMSNorm upcasts to
    fp32; flash/SDPA attention keeps q, k, v, its output and the log-sum-exp; SiLU-gated MLP).

    A trained base (full fine-tuning) keeps every linear layer's input for its weight
    gradient; a frozen base keeps none of them, but each LoRA adapter keeps its dropout
    mask (1 byte) and dropped-out input (2 bytes) per input feature, and its r-wide
    intermediate."""
    h, q, kv, i = shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate
    attention = 2 * q + 2 * kv + 2 * kv + 2 * q          # q, k, v, output
    if trainable_base:
        norms = 2 * (4 * h + 2 * h + 2 * h)              # fp32 input, 16-bit normalized, weighted output
        mlp = 2 * i * 4                                  # gate, silu(gate), up, their product
        return norms + attention + 2 * q + mlp           # + o_proj's input
    norms = 2 * (4 * h)
    mlp = 2 * i * 3                                      # gate, silu(gate), up
    targets = lora_targets(cfg.lora.target)
    proj = shape.projections()
    # no dropout: the input is already kept. On the CPU torch's dropout keeps its mask as a
    # float tensor of the input's dtype (the fused bool-mask kernel is CUDA's).
    per_input = (4 if on_cpu else 3) if cfg.lora.dropout > 0 else 0
    adapters = sum(per_input * proj[p][0] + 2 * cfg.lora.r for p in targets)
    if cfg.lora.dropout == 0 and "down" in targets:
        adapters += 2 * i                                # the MLP product, kept for lora_A
    if cfg.lora.dropout == 0 and "o" in targets:
        adapters += 2 * q
    return norms + attention + mlp + adapters


# --- fitting a device --------------------------------------------------------------------


def ram_gib() -> float | None:
    """This machine's memory (the CPU's budget)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class Fix:
    key: str
    value: object
    text: str           # "lower train.batch_size to 2", "set train.gradient_checkpointing: true"


def fixes(cfg: Config, facts: ModelFacts, devices: int, capacity_gib: float, world: int | None = None) -> list[Fix]:
    """Single changes to the config that make it fit `capacity_gib`, gentlest first: the
    settings that cost only speed, then the batch, then the sequence, then the method."""
    found: list[Fix] = []

    def fits(changed: Config) -> bool:
        est = estimate(changed, facts, devices, world)
        return est is not None and est.needed_gib <= capacity_gib

    if not cfg.train.gradient_checkpointing and fits(_with(cfg, "train", gradient_checkpointing=True)):
        found.append(Fix("train.gradient_checkpointing", True, "set train.gradient_checkpointing: true"))
    for b in _halvings(cfg.train.batch_size):
        if fits(_with(cfg, "train", batch_size=b)):
            accum = f" (and train.grad_accum to {cfg.train.grad_accum * cfg.train.batch_size // b} for the same batch)" \
                if cfg.train.batch_size % b == 0 else ""
            found.append(Fix("train.batch_size", b, f"lower train.batch_size to {b}{accum}"))
            break
    if devices > 1 and cfg.method == "full" and not cfg.layout.offloads and cfg.layout.zero_stage < 3:
        for stage in (f"zero{n}" for n in (2, 3) if n > cfg.layout.zero_stage):
            if fits(_with(cfg, "layout", deepspeed=stage)):
                found.append(Fix("layout.deepspeed", stage, f"set layout.deepspeed: {stage}"))
                break
    for n in _halvings(cfg.data.max_length, floor=256):
        if fits(_with(cfg, "data", max_length=n)):
            found.append(Fix("data.max_length", n, f"lower data.max_length to {n}"))
            break
    methods = {"full": ["lora", "qlora"], "lora": ["qlora"], "qlora": []}[cfg.method]
    for m in methods:
        if m == "qlora" and devices == 0:
            continue                    # QLoRA needs CUDA
        if fits(replace(cfg, method=m)):
            found.append(Fix("method", m, f"set method: {m}"))
            break
    return found


def _with(cfg: Config, section: str, **changes) -> Config:
    return replace(cfg, **{section: replace(getattr(cfg, section), **changes)})


def _halvings(n: int, floor: int = 1):
    n //= 2
    while n >= floor:
        yield n
        n //= 2


def advice(found: list[Fix], limit: int = 2) -> str:
    """'lower train.batch_size to 2 or set train.gradient_checkpointing: true'."""
    return " or ".join(f.text for f in found[:limit])


@dataclass
class Fit:
    """An estimate against the memory of the device it runs on."""

    estimate: MemoryEstimate
    capacity_gib: float | None      # None: not known here (planning for GPUs elsewhere)
    device: str                     # "GPU 0 (NVIDIA H200)", "this machine's RAM"
    fixes: list[Fix]

    @property
    def fits(self) -> bool:
        return self.capacity_gib is None or self.estimate.needed_gib <= self.capacity_gib

    def summary(self) -> str:
        est = self.estimate
        line = est.describe()
        if self.capacity_gib is None:
            return line + "; GPU memory unknown here"
        need = "" if est.on_cpu else f"; needs ≈ {est.needed_gib:.1f} GiB with the CUDA context"
        return f"{line}{need}; {self.device} has {self.capacity_gib:.1f} GiB"

    def shortfall(self) -> str:
        """'needs ≈ 50.9 GiB per GPU and GPU 0 (NVIDIA A100) has 40.0 GiB' ("" when it fits)."""
        if self.fits:
            return ""
        where = "of RAM" if self.estimate.on_cpu else "per GPU"
        return f"needs ≈ {self.estimate.needed_gib:.1f} GiB {where} and {self.device} has {self.capacity_gib:.1f} GiB"

    def remedy(self) -> str:
        """Which setting to change: the gentlest two single changes that fit."""
        return advice(self.fixes) or ("no single setting makes it fit: a smaller model, more GPUs with "
                                      "layout.deepspeed: zero3, or method: qlora")

    def problem(self) -> str:
        """One line: what does not fit and which setting to change ("" when it fits)."""
        return f"{self.shortfall()}: {self.remedy()}" if not self.fits else ""


def check_fit(cfg: Config, facts: ModelFacts, devices: int, capacity_gib: float | None, device: str,
              world: int | None = None) -> Fit | None:
    """The estimate and, when it does not fit, the changes that would make it fit."""
    est = estimate(cfg, facts, devices, world)
    if est is None:
        return None
    fit = Fit(est, capacity_gib, device, [])
    if not fit.fits:
        fit.fixes = fixes(cfg, facts, devices, capacity_gib, world)
    return fit


# --- the data ------------------------------------------------------------------------------


@dataclass
class DataEstimate:
    file_bytes: int
    tokens: int
    unknown: list[str]          # entries not on disk here (hub ids): not counted

    @property
    def cache_gib(self) -> float:
        return self.tokens * STORE_BYTES_PER_TOKEN / GIB

    def short(self) -> str:
        """One short line (the wizard's Review)."""
        if not self.file_bytes:
            return self.describe()
        return (f"data: ≈ {human(self.tokens)} tokens in {size(self.file_bytes)}; tokenized cache "
                f"≈ {size(self.tokens * STORE_BYTES_PER_TOKEN)}, memory-mapped")

    def describe(self) -> str:
        if not self.file_bytes:
            return "data: size unknown (" + ", ".join(self.unknown) + " not on this disk)" if self.unknown \
                else "data: no files"
        text = (f"data: {size(self.file_bytes)} of files, ≈ {human(self.tokens)} tokens; tokenized cache "
                f"≈ {size(self.tokens * STORE_BYTES_PER_TOKEN)} on disk, memory-mapped (page cache, "
                "not process memory)")
        if self.unknown:
            text += f"; not counted: {', '.join(self.unknown)}"
        return text


def size(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def human(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def estimate_data(files: list[str]) -> DataEstimate:
    """The data's size on disk and its token count guessed from it (nothing is read)."""
    total, unknown = 0, []
    for entry in files:
        path = Path(entry).expanduser()
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
        else:
            unknown.append(entry)
    return DataEstimate(total, math.ceil(total / FILE_BYTES_PER_TOKEN), unknown)
