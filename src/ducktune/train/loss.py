"""Cross-entropy over the LM head in chunks, on trained positions only.

The plain causal-LM loss computes logits for every position of the batch, in fp32, then
throws most of them away (prompt tokens, padding). With a 152k-token vocabulary that is
the largest tensor of a small-model run and a large share of its compute. Here:

1. the decoder runs without its LM head (`forward_hidden`);
2. only hidden states whose next token is trained (label != -100) are kept;
3. `linear_cross_entropy` walks them in chunks of `chunk_size` rows: logits of one chunk,
   its loss, and right away its gradient with respect to the hidden states (and the head
   weight when that trains), so backward only scales stored gradients. Peak extra memory
   is one [chunk x vocab] fp32 block, and no logits are recomputed.
4. On a CPU, when only the hidden states need a gradient (LoRA, QLoRA, evaluation), each chunk
   walks the vocabulary in blocks of head rows instead (`_linear_ce_vocab_blocks`): a block's
   logits, their running log-sum-exp and their share of the softmax-weighted gradient, rescaled
   as the running maximum grows (the online softmax of flash attention). Each head block is
   used by both of its matmuls while it is in cache, so the head is read from memory once per
   chunk instead of twice, and no [chunk x vocab] block is held: on 2 cores the loss of a
   152k-token head took about 20 % less time (bench/loss_blocks.py), and its memory is a
   [chunk x block] tile. On GPUs the one-block path stays: there the head's bandwidth is not the limit,
   and a block loop would add kernel launches to a launch-bound step.

The result equals the plain computation up to float rounding (tests/test_loss.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ducktune.data.template import IGNORE_INDEX
from ducktune.train.plan import vocab_block_rows  # the block size the memory plan counts

# Inputs the decoder takes from a collated batch (varlen boundaries included).
DECODER_INPUTS = ("attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def unwrap_peft(model):
    """The transformers model inside a PEFT wrapper (LoRA layers live in it, injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") and hasattr(model, "peft_config") else model


def forward_hidden(model, batch: dict):
    """Final hidden states [batch, tokens, hidden] of the decoder, without the LM head.

    use_cache=False matters: a KV cache built during training costs memory, and transformers
    only honours packed position ids when there is none.
    """
    decoder = unwrap_peft(model).get_decoder()
    kwargs = {k: batch[k] for k in DECODER_INPUTS if batch.get(k) is not None}
    return decoder(input_ids=batch["input_ids"], use_cache=False, **kwargs).last_hidden_state


def _linear_ce_chunks(hidden, weight, bias, targets, chunk_size: int, grads: bool):
    """Summed cross-entropy of (hidden @ weight.T + bias) against targets, chunk by chunk.

    With grads=True also returns d(sum)/d(hidden), d(sum)/d(weight), d(sum)/d(bias) (None when
    the weight/bias do not train).
    """
    n = hidden.shape[0]
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if grads else None
    grad_weight = torch.zeros_like(weight, dtype=torch.float32) if grads and weight.requires_grad else None
    grad_bias = torch.zeros_like(bias, dtype=torch.float32) if grads and bias is not None and bias.requires_grad else None
    for start in range(0, n, chunk_size):
        h = hidden[start:start + chunk_size]
        t = targets[start:start + chunk_size]
        logits = h @ weight.t()
        if bias is not None:
            logits = logits + bias
        logits = logits.float()  # softmax in fp32; a no-op copy-free for fp32 models
        target_logit = logits.gather(1, t[:, None]).squeeze(1)
        peak = logits.amax(dim=1, keepdim=True)
        probs = logits.sub_(peak).exp_()  # in place: one [chunk x vocab] buffer in all
        norm = probs.sum(dim=1, keepdim=True)
        total += (peak.squeeze(1) + norm.log().squeeze(1) - target_logit).sum()
        if not grads:
            continue
        probs.div_(norm)
        probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0  # d(CE)/d(logits) = softmax - onehot
        g = probs.to(hidden.dtype)
        grad_hidden[start:start + chunk_size] = g @ weight
        if grad_weight is not None:
            grad_weight.addmm_(g.t().float(), h.float())
        if grad_bias is not None:
            grad_bias += probs.sum(dim=0)
        del logits, probs, g
    return total, grad_hidden, grad_weight, grad_bias


def _linear_ce_vocab_blocks(hidden, weight, bias, targets, chunk_size: int, grads: bool):
    """`_linear_ce_chunks` for a frozen head (no weight or bias gradient), walking the vocabulary
    in blocks: per row chunk, a running maximum m, sum s of exp(logit - m) and accumulator
    acc = sum exp(logit - m) * head row, rescaled by exp(m_old - m_new) as m grows, so that
    d(sum CE)/d(hidden) = acc / s - head[target] without normalised probabilities ever stored."""
    n = hidden.shape[0]
    block = vocab_block_rows(weight.shape[1], weight.element_size())
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if grads else None
    for start in range(0, n, chunk_size):
        h = hidden[start:start + chunk_size]
        t = targets[start:start + chunk_size]
        rows = h.shape[0]
        peak = torch.full((rows, 1), float("-inf"), dtype=torch.float32, device=h.device)
        norm = torch.zeros((rows, 1), dtype=torch.float32, device=h.device)
        acc = torch.zeros((rows, h.shape[1]), dtype=torch.float32, device=h.device) if grads else None
        for first in range(0, weight.shape[0], block):
            w = weight[first:first + block]
            logits = h @ w.t()
            if bias is not None:
                logits = logits + bias[first:first + block]
            logits = logits.float()
            new_peak = torch.maximum(peak, logits.amax(dim=1, keepdim=True))
            rescale = (peak - new_peak).exp_()  # exp(-inf) = 0 on the first block
            probs = logits.sub_(new_peak).exp_()  # unnormalised, in place
            norm.mul_(rescale).add_(probs.sum(dim=1, keepdim=True))
            if grads:
                acc.mul_(rescale).add_(probs.to(w.dtype) @ w)
            peak = new_peak
        # The target's logit from its head row, in fp32 (in half precision: the blocks' value before rounding).
        target_rows = weight[t]
        target_logit = (h.float() * target_rows.float()).sum(dim=1)
        if bias is not None:
            target_logit = target_logit + bias[t].float()
        total += (peak.squeeze(1) + norm.log().squeeze(1) - target_logit).sum()
        if grads:  # softmax @ head - onehot @ head
            grad_hidden[start:start + chunk_size] = acc.div_(norm).sub_(target_rows.float()).to(hidden.dtype)
    return total, grad_hidden, None, None


def _ce_chunks_for(hidden, weight, bias, grads: bool):
    """The chunk walker for this head: vocabulary blocks on a CPU when no head gradient is wanted
    (a frozen head, or no gradient at all), else one block per chunk."""
    frozen = not grads or (not weight.requires_grad and (bias is None or not bias.requires_grad))
    return _linear_ce_vocab_blocks if frozen and hidden.device.type == "cpu" else _linear_ce_chunks


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and its gradients chunk by chunk; backward only scales them."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):
        walk = _ce_chunks_for(hidden, weight, bias, grads=True)
        total, grad_hidden, grad_weight, grad_bias = walk(hidden, weight, bias, targets, chunk_size, grads=True)
        ctx.grads = (grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight, grad_bias = ctx.grads
        ctx.grads = None
        grad_hidden = grad_hidden * grad_total.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_total).to(ctx.dtypes[0])
        if grad_bias is not None:
            grad_bias = (grad_bias * grad_total).to(ctx.dtypes[1])
        return grad_hidden, grad_weight, grad_bias, None, None


def linear_cross_entropy(hidden, weight, bias, targets, chunk_size: int = 1024):
    """Sum over rows of cross_entropy(hidden @ weight.T + bias, targets), never holding more
    than [chunk_size x vocab] logits. hidden: [n, h]; weight: [vocab, h]; targets: [n]."""
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad
                                              or (bias is not None and bias.requires_grad))
    if not needs_grad:
        return _ce_chunks_for(hidden, weight, bias, grads=False)(hidden, weight, bias, targets, chunk_size, grads=False)[0]
    return _LinearCrossEntropy.apply(hidden, weight, bias, targets, chunk_size)


def causal_lm_loss(model, batch: dict, chunk_size: int = 1024, num_items=None):
    """Mean next-token cross-entropy over trained positions (sum / num_items when given:
    the Trainer's token count over all gradient-accumulation micro-batches)."""
    hidden = forward_hidden(model, batch)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    head = unwrap_peft(model).get_output_embeddings()
    total = linear_cross_entropy(hidden[:, :-1][keep], head.weight, head.bias, targets[keep], chunk_size)
    denominator = num_items if num_items is not None else keep.sum()
    return total / (denominator.clamp_min(1) if hasattr(denominator, "clamp_min") else max(denominator, 1))


def verify_head(model, n_tokens: int = 12, seed: int = 0) -> float:
    """Relative difference between the model's own logits and head(forward_hidden(...)).

    Architectures that transform logits after the LM head (soft-capping, scaling) differ by
    far more than rounding; then the chunked loss must not be used.
    """
    embeddings = model.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, min(embeddings.shape[0], 1000), (1, n_tokens), generator=generator).to(embeddings.device)
    head = unwrap_peft(model).get_output_embeddings()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            reference = model(input_ids=ids, use_cache=False).logits.float()
            ours = head(forward_hidden(model, {"input_ids": ids})).float()
    finally:
        model.train(was_training)
    return float((reference - ours).abs().max() / reference.abs().max().clamp_min(1e-6))


# Relative logits difference above which the model's head is not a plain linear layer.
HEAD_TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 4e-2}


@dataclass(frozen=True)
class ChunkedLoss:
    """The micro-batch loss the Trainer calls: chunked cross-entropy over trained positions."""

    chunk_size: int

    def __call__(self, model, batch: dict, num_items=None):
        return causal_lm_loss(model, batch, self.chunk_size, num_items)


def choose_loss(model, chunk_size: int, log=print) -> ChunkedLoss | None:
    """The chunked loss for this model, or None when its logits are not head(hidden)
    (soft-capping, scaling) and the model must compute its own loss."""
    dtype = str(unwrap_peft(model).dtype).removeprefix("torch.")
    try:
        difference = verify_head(model)
    except Exception as exc:  # an architecture whose decoder cannot be called on its own
        log(f"Chunked loss off: {type(exc).__name__}: {exc}")
        return None
    if difference > HEAD_TOLERANCE.get(dtype, 1e-4):
        log(f"Chunked loss off: this model's logits are not a plain LM head over its hidden states "
            f"(difference {difference:.1e}); using the model's own loss")
        return None
    return ChunkedLoss(chunk_size)
