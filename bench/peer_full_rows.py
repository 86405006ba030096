"""The Hugging Face peers a savvy user runs: ``transformers.Trainer`` + ``peft`` on random full rows.

    python peer_full_rows.py MODEL_DIR OUT.json --method lora --batch-size 4 --steps 11 [--liger]

Every row is ``--max-length`` random token ids with labels equal to the inputs, so every
position trains and attention is plain causal attention (the flash kernel, no masks): the
fastest data this stack can be given. ``--liger`` is the tuned peer: ``use_liger_kernel=True``
(Liger's RMSNorm, SwiGLU, rope and fused linear cross-entropy patched into the model);
without it, the plain peer. Everything else is what a user of the HF stack writes:
from_pretrained, prepare_model_for_kbit_training (QLoRA), get_peft_model, TrainingArguments,
Trainer.train(), with the fused AdamW. Writes the step-end times (after a device sync),
losses, tokens per step and peak memory to OUT.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a Hugging Face model folder")
    p.add_argument("out", help="JSON file for the figures")
    p.add_argument("--method", choices=("lora", "qlora", "full"), default="lora")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--steps", type=int, default=11, help="optimizer steps in all (one micro-batch each)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--liger", action="store_true", help="TrainingArguments(use_liger_kernel=True)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from torch.utils.data import Dataset
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(0)
    kwargs = dict(dtype=torch.bfloat16, attn_implementation="sdpa")
    if args.method == "qlora":
        kwargs.update(device_map={"": 0}, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16))
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    if args.method != "qlora":
        model.to("cuda")
    model.config.use_cache = False
    gc_kwargs = {"use_reentrant": False}
    if args.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    if args.method != "full":
        # tunewiz's LoRA defaults (XTuner's): r 64, alpha 16, dropout 0.1, every linear layer.
        model = get_peft_model(model, LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear",
                                                 task_type="CAUSAL_LM", bias="none"))
    vocab = model.get_input_embeddings().weight.shape[0]
    rows = torch.randint(0, vocab, (args.steps * args.batch_size, args.max_length),
                         generator=torch.Generator().manual_seed(0))

    class Rows(Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, k):
            return {"input_ids": rows[k], "labels": rows[k]}

    marks: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            torch.cuda.synchronize()
            marks.append(time.time())

        def on_log(self, targs, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    targs = TrainingArguments(
        output_dir=str(Path(args.out).parent / "hf-trainer"), max_steps=args.steps,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        learning_rate=2e-5 if args.method == "full" else 2e-4, lr_scheduler_type="cosine", warmup_steps=1,
        optim="adamw_torch_fused", bf16=True, gradient_checkpointing=args.gradient_checkpointing,
        gradient_checkpointing_kwargs=gc_kwargs, use_liger_kernel=args.liger,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=model, args=targs, train_dataset=Rows(), callbacks=[Clock()])
    trainer.train()
    Path(args.out).write_text(json.dumps({
        "step_times": marks, "losses": losses, "step_tokens": [args.batch_size * args.max_length] * len(marks),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30}))


if __name__ == "__main__":
    main()
