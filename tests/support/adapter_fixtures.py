"""Builders for a fake run with a LoRA or full checkpoint, laid out as training writes it.

The LoRA weights are random with a non-zero B, so merging really changes the outputs and
a test comparing logits can tell merged from unmerged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunewiz.engine.contract.config import Config, DataConfig, ModelConfig, dump_yaml

PROBE = "Hello, I am the assistant. 我是小助手"


def make_run(root: Path, base: Path, method: str = "lora", template: str = "auto", system: str = "",
             name: str = "t", stamp: str = "20250101-000000") -> Path:
    run = root / f"{name}-{stamp}"
    (run / "logs").mkdir(parents=True)
    cfg = Config(name=name, model=ModelConfig(path=str(base)), method=method,
                 data=DataConfig(files=["data.json"], template=template, system=system))
    (run / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    return run


def add_lora_checkpoint(run: Path, base: Path, step: int, seed: int = 0) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    ckpt = run / "checkpoints" / f"step-{step}"
    peft_model.save_pretrained(ckpt)
    _finish_checkpoint(ckpt, step)
    return ckpt


def add_full_checkpoint(run: Path, base: Path, step: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # "trained": differs from the base everywhere
    ckpt = run / "checkpoints" / f"step-{step}"
    model.save_pretrained(ckpt)
    _finish_checkpoint(ckpt, step)
    return ckpt


def _finish_checkpoint(ckpt: Path, step: int) -> None:
    (ckpt / "optimizer.pt").write_bytes(b"not needed by convert")
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": step}))


def logits_with_adapter(base: Path, adapter: Path | None, text: str = PROBE) -> list[list[float]]:
    """Logits of base (+ adapter, unmerged) on text, computed in this process."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    with torch.no_grad():
        ids = torch.tensor([tok(text)["input_ids"]])
        return model(input_ids=ids).logits[0].tolist()


# Runs in a fresh interpreter that imports only transformers (what a user without tunewiz has).
PLAIN_LOAD = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, text = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
with torch.no_grad():
    logits = model(input_ids=torch.tensor([tok(text)["input_ids"]])).logits[0].tolist()
print(json.dumps({"logits": logits, "tunewiz_loaded": any(m.startswith("tunewiz") for m in sys.modules)}))
"""


def copy_without_chat_template(src: Path, dest: Path) -> Path:
    """A copy of a model folder whose tokenizer has no chat template."""
    shutil.copytree(src, dest)
    (dest / "chat_template.jinja").unlink(missing_ok=True)
    cfg_file = dest / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg.pop("chat_template", None)
    cfg_file.write_text(json.dumps(cfg))
    return dest
