"""The plain Hugging Face peer: ``transformers.Trainer`` + ``peft`` doing tunewiz's work.

Run as ``python hf_peer.py CONFIG OUT.json [--liger]``: it reads the very config.yaml the
tunewiz side trains from, so both sides share one source of settings. ``--liger`` is the
tuned peer: ``TrainingArguments(use_liger_kernel=True)`` (Liger's RMSNorm, SwiGLU, rope
and fused linear cross-entropy; CUDA only), as in peer_full_rows.py. The token stream is the
same too: tunewiz's ``build_dataset`` tokenizes and packs, tunewiz's ``BatchPlan`` gives the
order, and tunewiz's ``collate`` pads. Each Trainer "sample" is one whole micro-batch, so
a micro-batch that ends an epoch short holds the same sequences on both sides.
Everything else is what a user of the HF stack writes: from_pretrained, get_peft_model,
TrainingArguments, Trainer.train().
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path


def main(config_path: str, out_path: str, liger: bool = False) -> None:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from torch.utils.data import Dataset, SequentialSampler
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from tunewiz.engine.batches import BatchPlan
    from tunewiz.engine.contract.config import load_config
    from tunewiz.engine.dataset import build_dataset
    from tunewiz.engine.models import load_tokenizer, pick_dtype, quant_config
    from tunewiz.engine.packing import collate

    cfg = load_config(config_path)
    tc = cfg.train
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(tc.seed)
    tokenizer = load_tokenizer(Path(cfg.model.path))
    seqs, _ = build_dataset(cfg.data, cfg.stage, tokenizer)
    plan = BatchPlan(len(seqs), tc.batch_size, tc.grad_accum, 1, tc.seed)
    total = tc.max_steps
    micro = [plan.micro_batch(s, m, 0) for s in range(total) for m in range(tc.grad_accum)]
    step_tokens = [sum(len(seqs[i]["input_ids"]) for mb in micro[s * tc.grad_accum:(s + 1) * tc.grad_accum]
                       for i in mb) for s in range(total)]

    class MicroBatches(Dataset):
        def __len__(self):
            return len(micro)

        def __getitem__(self, k):
            return micro[k]

    def collator(items):
        (idxs,) = items
        return collate([seqs[i] for i in idxs], tokenizer.pad_token_id)

    dtype = pick_dtype(tc.dtype, device)
    # The peer is plain transformers: `varlen` is tunewiz's own backend, so it runs sdpa.
    kwargs = dict(dtype=dtype, attn_implementation="sdpa" if tc.attention in ("auto", "varlen") else tc.attention)
    if cfg.method == "qlora":
        kwargs.update(quantization_config=quant_config(cfg.quant, dtype), device_map={"": 0})
    model = AutoModelForCausalLM.from_pretrained(cfg.model.path, **kwargs)
    # Packed rows keep samples apart only without a KV cache (see tunewiz's packing notes);
    # with one, transformers would silently run plain causal attention instead.
    model.config.use_cache = False
    attn = model.config._attn_implementation
    gc_kwargs = {"use_reentrant": False}
    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=tc.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    if cfg.method != "full":
        model = get_peft_model(model, LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target, task_type="CAUSAL_LM", bias="none"))

    marks: list[float] = []
    losses: list[float] = []
    lrs: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()  # tunewiz's step event follows a host sync too
            marks.append(time.time())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                lrs.append(float(logs.get("learning_rate", float("nan"))))

    class InPlanOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    args = TrainingArguments(
        output_dir=str(Path(out_path).parent / "hf-trainer"), max_steps=total,
        per_device_train_batch_size=1,  # one item = one micro-batch of tc.batch_size rows
        gradient_accumulation_steps=tc.grad_accum, learning_rate=tc.lr, weight_decay=tc.weight_decay,
        max_grad_norm=tc.max_grad_norm, lr_scheduler_type="cosine",
        warmup_steps=math.ceil(total * tc.warmup_ratio), seed=tc.seed,
        # tunewiz fuses AdamW on the GPU only; match it so the optimizer is not the difference.
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=not cuda,
        gradient_checkpointing=tc.gradient_checkpointing, gradient_checkpointing_kwargs=gc_kwargs,
        use_liger_kernel=liger,
        # One loss read per step, like tunewiz's step event; nothing saved or evaluated.
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0)
    trainer = InPlanOrder(model=model, args=args, train_dataset=MicroBatches(), data_collator=collator,
                          callbacks=[Clock()])
    trainer.train()
    peak = (torch.cuda.max_memory_allocated() / 2**30 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    Path(out_path).write_text(json.dumps({
        "step_times": marks, "losses": losses, "lrs": lrs, "step_tokens": step_tokens, "peak_gib": peak,
        "threads": torch.get_num_threads(), "device": device, "attention": attn}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], liger="--liger" in sys.argv[3:])
