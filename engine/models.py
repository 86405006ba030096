"""Finding, checking and loading base models; wrapping them for full / LoRA / QLoRA.

Path checks (``resolve_model_path``, ``inspect_model``) read only config.json, so they are
cheap and torch-free; torch / transformers / peft / bitsandbytes load lazily inside the
functions that need them.
"""

from __future__ import annotations

from pathlib import Path

from .contract.config import is_model_hub_id
from .contract.errors import ModelError
from .contract.model_facts import ModelFacts, read_model_facts


def resolve_model_path(path: str) -> Path:
    """"demo" -> the bundled demo model (prepared once); a hub id (owner/name) that is no
    local path -> its folder in the Hugging Face cache; else a local HF folder."""
    if path == "demo":
        from .demo import demo_model_path

        return demo_model_path()
    if not str(path).strip():  # Path("") is ".", which exists: say what is really wrong
        raise ModelError("the model path is empty", 'give a local Hugging Face model folder, or "demo" for the bundled model')
    p = Path(path).expanduser()
    if not p.exists() and is_model_hub_id(path):
        return _hub_snapshot(path)
    if not p.exists():
        raise ModelError(f"model path {path} does not exist",
                         'give a local Hugging Face model folder, or "demo" for the bundled model')
    if not (p / "config.json").is_file():
        raise ModelError(f"{path} has no config.json: not a Hugging Face model folder",
                         "point model.path at the folder that holds config.json and the weights")
    return p


# Weights a model repository may carry twice in other formats (Meta's original/ folder,
# Mistral's consolidated file, GGUF, TF/Flax): transformers reads none of them.
_NOT_FOR_TRANSFORMERS = ["original/*", "consolidated*", "*.pth", "*.gguf", "*.h5", "*.msgpack", "*.onnx"]


def _hub_snapshot(model_id: str) -> Path:
    """The model's folder in the Hugging Face cache: downloaded once when online, read from
    the cache alone when offline (HF_HUB_OFFLINE=1) or when the hub cannot be reached."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(model_id, ignore_patterns=_NOT_FOR_TRANSFORMERS))
    except Exception as e:  # offline and not cached, gated, no such repository, network
        raise ModelError(f"model path {model_id} does not exist here, and the hub did not provide it "
                         f"({_hub_failure(e)})",
                         f"online, `hf download {model_id}` (log in first for gated models); "
                         "or point model.path at a local Hugging Face folder") from None
    if not (folder / "config.json").is_file():
        raise ModelError(f"{model_id} has no config.json: not a Hugging Face model repository",
                         "choose a transformers model repository, or a local Hugging Face folder")
    return folder


def _hub_failure(e: Exception) -> str:
    """Why the hub gave nothing, in a few words (its own messages run to paragraphs)."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(e, LocalEntryNotFoundError):
        return "not in the Hugging Face cache, and the hub is offline or unreachable"
    if isinstance(e, GatedRepoError):
        return "a gated model: accept its license on the hub, then log in"
    if isinstance(e, RepositoryNotFoundError):
        return "no such model on the hub, or a private one"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return first[:120]


def inspect_model(path: Path) -> ModelFacts:
    """config.json's facts (contract.model_facts, as the wizard reads them); transformers
    says which model types need no code from the folder."""
    return read_model_facts(path, known_model_type=_known_type)


def _known_type(model_type: str | None) -> bool:
    if not model_type:
        return False
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:
        return False
    return model_type in CONFIG_MAPPING_NAMES


def check_model(path: Path, trust_remote_code: bool) -> ModelFacts:
    """Refuse models the run cannot use, with the fix in the hint."""
    facts = inspect_model(path)
    if facts.needs_remote_code and not trust_remote_code:
        raise ModelError(f"{path} needs trust_remote_code (it ships its own model code)",
                         "set model.trust_remote_code: true only if you trust the code in that folder")
    if not facts.is_causal_lm:
        raise ModelError(f"{path} is not a causal language model (architectures: {facts.architecture})",
                         "choose a chat or base LLM folder (…ForCausalLM)")
    return facts


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # transformers raises many types for a broken folder
        raise ModelError(f"{path}: cannot load the tokenizer ({str(e).splitlines()[0]})",
                         "the folder needs tokenizer files (tokenizer.json or tokenizer.model)") from None
    if tok.pad_token_id is None:
        # Padding positions are masked out of the loss and attention, so any id works.
        tok.pad_token = tok.eos_token
    return tok


def pick_dtype(requested: str, device: str):
    """auto: bf16 on GPUs that support it, fp16 on older ones, fp32 on the CPU."""
    import torch

    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if requested != "auto":
        return table[requested]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_model(cfg, path: Path, device: str, dtype, for_training: bool = True, place: bool = True):
    """The base model for cfg.method, on device. QLoRA loads 4/8-bit with bitsandbytes.
    place=False leaves placement to DeepSpeed (ZeRO-3 loads weights already partitioned)."""
    import torch
    from transformers import AutoModelForCausalLM

    from . import attention

    kwargs = dict(trust_remote_code=cfg.model.trust_remote_code, dtype=dtype)
    kwargs["attn_implementation"] = attention.implementation(cfg.train.attention, device, dtype)
    if cfg.quantized:
        require_cuda_for_quantization(device)
        kwargs["quantization_config"] = quant_config(cfg.quant, dtype)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except ValueError as e:
        raise ModelError(f"{path}: cannot load as a causal LM ({str(e).splitlines()[0]})",
                         "choose a chat or base LLM folder") from None
    if attention.uses_lengths(model) and not model.is_backend_compatible():
        # A model with its own attention code (remote code, older classes) never calls ours.
        if cfg.train.attention == "varlen":
            raise ModelError(f"{path}: this model's attention code cannot use train.attention: varlen",
                             "set train.attention: auto (or sdpa)")
        model.set_attn_implementation("sdpa")
    if not cfg.quantized and place:
        model.to(device)
    if for_training:
        model.config.use_cache = False
    return model


def require_cuda_for_quantization(device: str) -> None:
    if not device.startswith("cuda"):
        raise ModelError("QLoRA needs a CUDA GPU and none is available",
                         "use method: lora on this machine (same quality, more memory)")


def quant_config(quant, compute_dtype):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError("QLoRA needs the bitsandbytes package", "pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if quant.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant.type,
                              bnb_4bit_use_double_quant=quant.double_quant, bnb_4bit_compute_dtype=compute_dtype)


def wrap_for_method(model, cfg):
    """full: train everything. lora / qlora: a peft LoRA adapter on the frozen base."""
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not cfg.uses_adapter:
        return model
    import torch
    from peft import get_peft_model

    from .contract.config import check_lora_target

    # A target naming no module fails here, naming the model's own (peft: a traceback).
    check_lora_target(cfg, [n for n, _ in model.named_modules()],
                      [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)])
    if cfg.quantized:
        # What peft's prepare_model_for_kbit_training does, less its fp32 upcast of every
        # unquantized weight (embedding, output layer, norms): that upcast makes the
        # residual stream fp32 and costs memory and time; under autocast the weights are
        # used in bf16 anyway, and none of them trains.
        for p in model.parameters():
            p.requires_grad_(False)
    if cfg.train.gradient_checkpointing:
        # Inputs of a frozen embedding carry no grad; checkpointed blocks need one.
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(cfg))


def lora_config(cfg):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target, task_type="CAUSAL_LM", bias="none")


def count_params(model) -> tuple[int, int]:
    total = trainable = 0
    for p in model.parameters():
        n = getattr(p, "ds_numel", None) or p.numel()  # ZeRO-3 leaves an empty local shard
        # 4-bit weights pack two values per byte element.
        if p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable
