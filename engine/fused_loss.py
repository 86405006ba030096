"""The training loss straight from the last hidden states, a chunk of tokens at a time.

transformers' causal-LM loss multiplies every position by the output embedding, keeps the
[tokens x vocab] logits (bf16, plus an fp32 copy inside the loss) and holds them for the
backward pass: for a 92k vocabulary at 4 x 2,048 tokens that is over 4 GiB, and several
full passes over it. Here a chunk's logits exist only inside the forward: its loss and the
gradients with respect to the hidden states (and the output embedding, when that trains)
are computed on the spot, and backward only scales them by the incoming gradient.

The arithmetic is transformers' own: logits from a matmul in the compute dtype, softmax and
loss in fp32, labels shifted by one, the sum over trained tokens divided by
``num_items_in_batch``; the gradients go through the compute dtype as autograd's would.

Only architectures whose head is a plain projection qualify (no logit soft-capping or
scaling, no auxiliary losses); anything else trains with the model's own loss.
"""

from __future__ import annotations

IGNORE = -100
# Causal LMs whose forward is `logits = lm_head(hidden)` and whose loss is plain
# cross-entropy on shifted labels.
ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3", "internlm2", "internlm3", "yi"})
# fp32 logits per chunk: 2**25 elements (128 MiB; 362 rows of a 92k vocabulary) keeps a
# chunk's matmuls large enough to run at full speed while capping the memory they add at
# the end of the forward pass, when every layer's activations are still held: Liger's fused
# loss, the tuned peer's, takes chunks of a few hundred rows too.
CHUNK_ELEMENTS = 2**25
# When the output layer trains, every chunk also adds its [vocab x hidden] weight gradient
# into an fp32 sum (two passes over 0.7 GiB for a 92k vocabulary): fewer, larger chunks.
TRAINED_HEAD_CHUNK_ELEMENTS = 2**27
# Extra batch keys the recipe adds (computed on the CPU): trained positions and targets.
ROW_KEYS = ("tw_loss_rows", "tw_loss_targets")


def causal_lm(model):
    """The transformers model inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def unsupported(model) -> str | None:
    """Why `model` must keep its own loss, or None when the fused loss applies."""
    import torch

    lm = causal_lm(model)
    kind = getattr(lm.config, "model_type", "?")
    if kind not in ARCHITECTURES:
        return f"architecture {kind} is not known to have a plain output projection"
    get_decoder = getattr(lm, "get_decoder", None)
    if not callable(get_decoder) or get_decoder() in (None, lm):
        return "the model does not expose its decoder stack"
    head = lm.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return "the output layer is adapted, quantized or biased"
    if not head.weight.is_floating_point():
        return "the output layer is quantized"
    return None


def trained_rows(labels) -> dict:
    """Which flattened positions have a trained target, and those targets. The recipe calls
    this on the CPU copy of the labels, so finding them costs the GPU no sync."""
    import torch

    # Position t predicts token t+1; the last position of each row predicts nothing.
    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE).reshape(-1)
    rows = (targets != IGNORE).nonzero().squeeze(1)
    return {ROW_KEYS[0]: rows, ROW_KEYS[1]: targets[rows]}


def shifted_loss(model, batch: dict, num_items_in_batch):
    """The loss `model(**batch, num_items_in_batch=...).loss` would give, without logits.
    Only positions with a trained target meet the output layer: in SFT the prompt tokens
    skip that [hidden x vocab] matmul (the largest in the model) both ways."""
    import torch

    lm = causal_lm(model)
    picked = {k: batch[k] for k in ROW_KEYS} if ROW_KEYS[0] in batch else trained_rows(batch["labels"])
    inputs = {k: v for k, v in batch.items() if k != "labels" and k not in ROW_KEYS}
    hidden = lm.get_decoder()(**inputs).last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, picked[ROW_KEYS[0]])
    weight = lm.get_output_embeddings().weight
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    return LinearCrossEntropy.apply(hidden, weight, picked[ROW_KEYS[1]], num_items_in_batch, dtype)


class LinearCrossEntropy:
    """sum(cross_entropy(hidden @ weight.T, targets)) / num_items, gradients computed in
    the forward pass. Wrapped lazily so importing this module does not import torch."""

    _function = None

    @classmethod
    def apply(cls, hidden, weight, targets, num_items, dtype):
        if cls._function is None:
            cls._function = _define_function()
        return cls._function.apply(hidden, weight, targets, num_items, dtype)


def _define_function():
    import torch

    class _LinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets, num_items, dtype):
            with torch.autocast(hidden.device.type, enabled=False):
                return _forward(ctx, hidden, weight, targets, num_items, dtype)

        @staticmethod
        def backward(ctx, grad_loss):
            # Saved already scaled and in the inputs' dtypes (one rounding, as before): no
            # fp32 copies are held from the forward pass into the backward pass, whose start
            # is the step's memory peak. grad_loss is 1 (or the world size) in training.
            grad_hidden, grad_weight = ctx.saved_tensors
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
            grad_weight = grad_weight * grad_loss.to(grad_weight.dtype) if ctx.weight_needs_grad else None
            return grad_hidden, grad_weight, None, None, None

    def _forward(ctx, hidden, weight, targets, num_items, dtype):
        """Every row here has a trained target. Per chunk: logits in `dtype`, one fp32
        softmax, minus one at the target, back to `dtype` for the two gradient matmuls;
        the 1/num_items scale goes on the small results, not the [chunk x vocab] tensor."""
        wants_weight = weight.requires_grad
        chunk = max(1, (TRAINED_HEAD_CHUNK_ELEMENTS if wants_weight else CHUNK_ELEMENTS) // weight.shape[0])
        w = weight.to(dtype)
        grad_hidden = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if wants_weight else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start:start + chunk].to(dtype)
            y = targets[start:start + chunk, None]
            chunk_loss, grad = softmax_gradient(h @ w.T, y, dtype)
            loss += chunk_loss
            grad_hidden[start:start + chunk] = grad @ w
            if wants_weight:
                add_weight_gradient(grad_weight, grad, h)
            # Freed before the next chunk's logits, not when the names are rebound after them:
            # that held one more [chunk x vocab] gradient at the loop's peak.
            del grad, h
        scale = 1.0 / (num_items.float() if torch.is_tensor(num_items) else float(num_items))
        # Scaled in place: a product would be one more fp32 copy of each sum (0.7 GiB for a
        # trained 92k x 2048 output layer) beside the result, above the loop's own peak.
        grad_hidden = grad_hidden.mul_(scale).to(hidden.dtype)
        if wants_weight:
            grad_weight = grad_weight.mul_(scale).to(weight.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_needs_grad = wants_weight
        return loss * scale

    return _LinearCrossEntropy


# The two steps of a chunk that are not matrix products, named so that bench/bench_fused_loss.py
# can time other ways of doing them against these (on an H200 they are 5-8% of a full
# fine-tuning step: docs/bench.md, "where the step's time goes").

def softmax_gradient(logits, y, dtype):
    """(sum of -log p(target), d loss / d logits in `dtype`) for a [rows x vocab] chunk of
    logits and its [rows x 1] targets: one fp32 softmax, minus one at the target."""
    import torch

    prob = torch.softmax(logits, dim=-1, dtype=torch.float32)
    del logits   # the caller passes a temporary: freed here, before the fp32 gradient's cast
    # -log p(target) = logsumexp - logit; p underflows only past a loss of ~87.
    loss = -prob.gather(1, y).clamp_min_(torch.finfo(torch.float32).tiny).log_().sum()
    return loss, prob.scatter_add_(1, y, torch.full(y.shape, -1.0, device=y.device)).to(dtype)


def add_weight_gradient(grad_weight, grad, h) -> None:
    """grad_weight += grad.T @ h, summed in fp32 with no fp32 copy of the product."""
    grad_weight.add_(grad.T @ h)
