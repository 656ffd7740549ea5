"""Memory plan: predict a run's peak memory from the model's config.json alone, and choose
what fits a budget (micro-batch, gradient accumulation, gradient checkpointing).

The peak of a LoRA step is reached when backward starts: every layer's saved activations
are alive, plus the optimizer state, the weights, the loss head's working set and the
framework itself. Each term below is a count of the tensors PyTorch really keeps (see
`activation_floats_per_token`), not a rule of thumb; the constants that are not shapes
(framework overhead, allocator slack) were measured on CPU and are named where defined.

Pure arithmetic: no torch import, nothing loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ducktune.config import parse_memory
from ducktune.train.tokenize import trained_token_count

GiB = 1024**3
MiB = 1024**2

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

# Resident memory of the process before the model loads: Python, torch, transformers, peft,
# accelerate, the Trainer and ducktune's own modules (measured: 0.47 GiB after those imports, 0.48
# with ducktune's, on Linux/CPU with torch 2.13 and transformers 5). On GPUs the CUDA context
# (~0.4 GiB) plays that role for device memory.
FRAMEWORK_BYTES = {"cpu": 485 * MiB, "cuda": 400 * MiB, "mps": 300 * MiB}
# The loaded tokenizer, resident for the whole run, per vocabulary entry (measured: SmolLM2's
# 49,152-token fast tokenizer holds 54 MiB of RSS). Host memory: counted on CPU only.
TOKENIZER_BYTES_PER_ENTRY = 1150
# Headroom between the plan and a budget: a setup is chosen only when its estimate stays this
# share below the budget. The estimate met measured peaks within -1 % .. +4 % on SmolLM2 (batch
# 1, 2 and 4, with and without checkpointing) and +2 % / +9 % in bench/RESULTS.md; the rest is
# what no shape predicts (heap fragmentation, the order of a step's frees).
PLAN_HEADROOM = 0.04
# Where freed memory is not given back to the OS at once (glibc's default, or no glibc: macOS,
# musl), the heap keeps its highest size: peak RSS measured ~30 % above the live tensors
# (memory_probe; SmolLM2 micro-batches of 115 tokens: +95 MiB over ~310 MiB of activations).
UNRETURNED_HEAP_SLACK = 0.30
# The same with LoRA computed as one addmm (lora.fused, train/lora_addmm.py): no output-sized
# temporaries per projection for the scale and the add, so the heap fragments less. Measured
# (bench/lora_addmm.py, SmolLM2 bench side: 1,328-1,347 MiB against 1,293 MiB of planned parts
# before slack, i.e. +15 %; PEFT's forward there: 1,408-1,423 MiB).
UNRETURNED_HEAP_SLACK_ADDMM = 0.15
# Share of a preference run's no-grad reference pass that a heap keeping freed memory still holds
# during the trained pass: the DPO plan test (tests/test_preference_plan.py) measured 1303-1419 MB
# over four runs where the plan gave 1149 MB counting none of the pass and 1583 MB counting all of it.
KEPT_REFERENCE_SHARE = 0.5
# Allocator slack on top of live tensors: small on CPU when freed buffers go back to the OS at once
# (return_freed_memory_to_os: done only under an explicit train.memory_budget, because its page
# faults cost 25-40 % of a small model's CPU step); caching allocators on GPUs keep more.
ALLOCATOR_SLACK = {"cpu": 0.02, "cuda": 0.08, "mps": 0.10}
# Python lists of token ids and labels: ~8-byte pointer + ~32-byte int object each.
DATA_BYTES_PER_TOKEN = 80
# bitsandbytes NF4 with double quantization: 4 bits per weight + block constants.
NF4_BYTES_PER_PARAM = 0.53

# Which dimensions each common projection maps (in, out), by leaf module name.
_PROJECTIONS = {
    "q_proj": ("h", "q"), "k_proj": ("h", "kv"), "v_proj": ("h", "kv"), "o_proj": ("q", "h"),
    "gate_proj": ("h", "i"), "up_proj": ("h", "i"), "down_proj": ("i", "h"),
}


def format_bytes(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / MiB:.0f} MiB"  # binary units, as --memory reads them


# ----------------------------------------------------------------------------- the model's shape

@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    max_positions: int | None
    qkv_bias: bool = False

    @classmethod
    def from_config(cls, config: dict) -> "ModelShape":
        from ducktune.models.loading import text_config

        text = text_config(config)
        hidden = text["hidden_size"]
        heads = text.get("num_attention_heads", 1) or 1
        return cls(
            vocab=text["vocab_size"],
            hidden=hidden,
            layers=text["num_hidden_layers"],
            heads=heads,
            kv_heads=text.get("num_key_value_heads", heads) or heads,
            head_dim=text.get("head_dim") or hidden // heads,
            intermediate=text.get("intermediate_size", 4 * hidden),
            tied=bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False))),
            max_positions=text.get("max_position_embeddings"),
            # Qwen2 always has q/k/v biases; Llama-style configs say so in attention_bias.
            qkv_bias=text.get("model_type") == "qwen2" or bool(text.get("attention_bias")),
        )

    def dim(self, name: str) -> int:
        return {"h": self.hidden, "q": self.heads * self.head_dim, "kv": self.kv_heads * self.head_dim,
                "i": self.intermediate}[name]

    @property
    def layer_linear_params(self) -> int:
        return sum(self.dim(a) * self.dim(b) for a, b in _PROJECTIONS.values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        bias = (self.dim("q") + 2 * self.dim("kv")) if self.qkv_bias else 0
        return self.layers * (self.layer_linear_params + bias + 2 * self.hidden) + self.embedding_params + self.hidden

    def lora_params(self, r: int, targets: list[str] | None) -> int:
        """Adapter parameters per model; targets None = every linear projection (all-linear)."""
        names = list(_PROJECTIONS) if targets is None else targets
        per_layer = 0
        for name in names:
            a, b = _PROJECTIONS.get(name, ("h", "h"))
            per_layer += r * (self.dim(a) + self.dim(b))
        return per_layer * self.layers

    def activation_floats_per_token(self, n_targets: int, r: int) -> int:
        """Values autograd keeps per token per decoder layer (Llama/Qwen-style block, frozen base).

        norm inputs (2h) + normed inputs (2h) + RMS statistics (2) + q after RoPE (q) + k, v (2kv)
        + attention output and its contiguous copy for o_proj (2q) + per-head softmax stats (heads)
        + gate, up, act(gate), act(gate)*up (4i) + each adapter's r-wide A output.
        """
        q, kv = self.dim("q"), self.dim("kv")
        return 4 * self.hidden + 3 * q + 2 * kv + 4 * self.intermediate + self.heads + 2 + n_targets * r

    def fp32_floats_per_token(self) -> int:
        """Of those, the values kept in fp32 whatever the model's dtype: both norms' inputs (HF's
        RMSNorm upcasts its input; LayerNorm runs in fp32 under autocast)."""
        return 2 * self.hidden

    def dropout_floats_per_token(self, targets: list[str]) -> int:
        """Extra values per token per layer with LoRA dropout: each adapter keeps its dropped-out
        input and the dropout mask (both input-sized), while the shared input of a projection
        group (q/k/v, o, gate/up, down) is no longer kept for the adapters."""
        groups = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "attn_out",
                  "gate_proj": "mlp_in", "up_proj": "mlp_in", "down_proj": "mlp_out"}
        extra, seen = 0, set()
        for name in targets:
            width = self.dim(_PROJECTIONS.get(name, ("h", "h"))[0])
            extra += 2 * width
            group = groups.get(name, name)
            if group not in seen:
                seen.add(group)
                extra -= width
        return extra


# ----------------------------------------------------------------------------- one estimate

@dataclass(frozen=True)
class Setup:
    """What a run does per micro-batch, as far as memory goes."""

    method: str = "lora"  # lora | qlora | full
    dtype: str = "float32"
    batch_size: int = 4
    grad_accum: int = 1
    row_tokens: int = 1024  # tokens of the longest row a micro-batch holds
    trained_fraction: float = 1.0  # share of tokens with a label (the chunked loss only sees those)
    checkpointing: bool = False
    lora_r: int = 16
    lora_targets: tuple[str, ...] | None = None  # None = all-linear
    lora_dropout: float = 0.0
    optimizer: str = "adamw_torch"
    loss_chunk_size: int = 1024
    chunked_loss: bool = True
    dataset_tokens: int = 0
    # Preference objectives (train/preference.py): rows in the forward pass that trains, per example
    # (2 for a chosen/rejected pair), and the no-grad forward passes per micro-batch (the reference
    # with the adapter off; KTO also scores mismatched answers), with the rows of the largest one.
    objective: str = "sft"
    rows_per_example: int = 1
    no_grad_passes: int = 0
    no_grad_rows_per_example: int = 0
    min_batch_size: int = 1
    # CPU: whether freed buffers go back to the OS at once (heap_returns_memory); else the heap
    # keeps its highest size and the plan adds UNRETURNED_HEAP_SLACK.
    heap_returned: bool = True
    # LoRA as one addmm (lora.fused on plain fp32 layers): the heap keeps less (UNRETURNED_HEAP_SLACK_ADDMM).
    lora_addmm: bool = False

    @property
    def tokens(self) -> int:
        return self.batch_size * self.rows_per_example * self.row_tokens


# Objective -> (rows per example in the trained pass, no-grad forward passes, rows of the largest one,
# smallest micro-batch). DPO: the reference scores both answers in one pass; KTO: the reference scores
# the answers and their mismatched copies, and the policy the copies (its KL estimate needs 2+ rows).
PREFERENCE_PASSES = {"sft": (1, 0, 0, 1), "dpo": (2, 1, 2, 1), "orpo": (2, 0, 0, 1), "simpo": (2, 0, 0, 1),
                     "kto": (1, 3, 1, 2)}


# Head rows per vocabulary block of the CPU loss (train/loss.py `_linear_ce_vocab_blocks`): about
# this many bytes of weight, so a block stays in a core's share of the last-level cache between its
# two matmuls (2,304 rows of a 448-wide fp32 head; ad hoc on 2 cores, Qwen's 152k-row head:
# 1,024-2,048-row blocks about 20 % faster than one [chunk x vocab] block, 8,192-row ones 5-10 %).
VOCAB_BLOCK_BYTES = 4 * 2 ** 20


def vocab_block_rows(hidden_size: int, element_bytes: int) -> int:
    """Head rows per vocabulary block: VOCAB_BLOCK_BYTES of weight, a multiple of 256, at least 256."""
    return max(256, VOCAB_BLOCK_BYTES // (hidden_size * element_bytes) // 256 * 256)


def loss_logits_columns(shape: ModelShape, setup: Setup, device: str, head_trains: bool) -> int:
    """Columns of the loss's logits block the estimate counts: a vocabulary block on a CPU when the
    head is frozen (or no gradient is taken: train/loss.py `_ce_chunks_for`), else the whole vocabulary.

    Where the heap keeps freed memory (a CPU run without train.memory_budget) the estimate keeps a
    whole [chunk x vocab] block even so: measured with the vocabulary-block loss, such a run's peak
    RSS stayed where it was with the one-block loss (tests/test_plan.py's run: 912 vs 909 MiB), as
    the heap the step's smaller buffers leave behind takes that room, which UNRETURNED_HEAP_SLACK
    was calibrated with; with freed memory returned at once the peak fell by the block (808 -> 743
    MiB) and the tile is what counts."""
    if device == "cpu" and not head_trains and setup.heap_returned:
        return min(shape.vocab, vocab_block_rows(shape.hidden, DTYPE_BYTES[setup.dtype]))
    return shape.vocab


def no_grad_forward_bytes(shape: ModelShape, setup: Setup, device: str = "cpu") -> int:
    """Working set of the largest no-grad forward pass (the reference): one decoder layer's
    transient tensors (inputs, q/k/v, attention output, MLP gate/up/product) for its rows, the final
    hidden states and one [chunk x vocab] fp32 block of the head. It runs before the trained forward,
    so it adds to the peak only where it exceeds that step's activations and working set."""
    if not setup.no_grad_passes:
        return 0
    width = DTYPE_BYTES[setup.dtype]
    tokens = setup.batch_size * setup.no_grad_rows_per_example * setup.row_tokens
    layer = (4 * shape.hidden + shape.dim("q") * 2 + 2 * shape.dim("kv") + 3 * shape.intermediate) * width * tokens
    columns = loss_logits_columns(shape, setup, device, head_trains=False)
    head = min(setup.loss_chunk_size, tokens) * columns * 4 + tokens * shape.hidden * width
    return layer + head


def estimate(shape: ModelShape, setup: Setup, device: str = "cpu") -> dict[str, int]:
    """Peak memory by component, in bytes."""
    width = DTYPE_BYTES[setup.dtype]
    targets = list(setup.lora_targets) if setup.lora_targets is not None else list(_PROJECTIONS)
    parts: dict[str, int] = {}

    # Weights: 4-bit QLoRA quantizes the decoder's linear layers; embeddings/head/norms stay in dtype.
    if setup.method == "qlora":
        linear = shape.layers * shape.layer_linear_params
        parts["weights"] = int(linear * NF4_BYTES_PER_PARAM + (shape.params - linear) * width)
    else:
        parts["weights"] = shape.params * width

    # Trainable parameters, their gradients and the optimizer state (fp32 adapters; AdamW keeps 2 moments).
    moments = {"adamw_torch": 2, "adamw_torch_fused": 2, "sgd": 0, "adafactor": 0.1}.get(setup.optimizer, 2)
    if setup.method == "full":
        parts["trainable"] = int(shape.params * width * (2 + moments))
    else:
        parts["trainable"] = int(shape.lora_params(setup.lora_r, setup.lora_targets) * 4 * (2 + moments))

    # Activations kept for backward: every layer's, or with checkpointing only each layer's input.
    n_targets = 0 if setup.method == "full" else len(targets)
    per_layer = shape.activation_floats_per_token(n_targets, setup.lora_r) * width * setup.tokens
    if width < 4:  # half precision: the norms' inputs are still kept in fp32
        per_layer += shape.fp32_floats_per_token() * (4 - width) * setup.tokens
    if setup.lora_dropout > 0 and setup.method != "full":
        per_layer += shape.dropout_floats_per_token(targets) * width * setup.tokens
    layer_input = shape.hidden * width * setup.tokens
    parts["activations"] = shape.layers * (layer_input if setup.checkpointing else per_layer)
    if width < 4 and setup.method != "full" and not setup.checkpointing:
        # autocast's half-precision copies of the fp32 adapter weights, kept for backward
        parts["activations"] += shape.lora_params(setup.lora_r, setup.lora_targets) * width

    # On top of them, the larger of two working sets that are never alive together:
    # - the loss head at the end of forward: one [chunk x vocab] fp32 block (+ its half-precision
    #   twin) and the trained hidden states with their gradient (the plain loss instead holds
    #   [tokens x vocab] fp32 logits, log-probabilities and their gradient);
    # - backward: gradients flowing through one layer (and that layer recomputed, with checkpointing).
    trained = max(1, int(setup.tokens * setup.trained_fraction))
    if setup.chunked_loss:
        rows = min(setup.loss_chunk_size, trained)
        if setup.objective != "sft":  # preference log-probabilities go through the head one sequence at a time
            rows = min(rows, setup.row_tokens)
        columns = loss_logits_columns(shape, setup, device, head_trains=setup.method == "full")
        head = rows * columns * (4 + (2 * width if width < 4 else 0)) + 2 * trained * shape.hidden * width
        if columns < shape.vocab:  # the vocabulary-block walk's fp32 accumulator and target head rows
            head += rows * shape.hidden * (4 + width)
    else:
        head = 3 * setup.tokens * shape.vocab * 4
    backward = (2 * shape.hidden + 2 * shape.intermediate) * width * setup.tokens + trained * shape.hidden * width
    if setup.checkpointing:
        backward += per_layer
    parts["working set"] = max(head, backward)
    # A preference run's reference pass: freed before the trained forward, so only its excess counts
    # where freed buffers go back to the OS; a heap that keeps them (glibc's default) keeps part of it.
    heap_keeps_freed = device == "cpu" and not setup.heap_returned
    if setup.no_grad_passes:
        reference = no_grad_forward_bytes(shape, setup, device)
        excess = max(0, reference - parts["activations"] - parts["working set"])
        parts["reference pass"] = max(excess, int(KEPT_REFERENCE_SHARE * reference)) if heap_keeps_freed else excess

    parts["data"] = setup.dataset_tokens * DATA_BYTES_PER_TOKEN if device == "cpu" else 0
    parts["tokenizer"] = shape.vocab * TOKENIZER_BYTES_PER_ENTRY if device == "cpu" else 0
    live = sum(parts.values())
    kept = UNRETURNED_HEAP_SLACK_ADDMM if setup.lora_addmm else UNRETURNED_HEAP_SLACK
    slack = kept if heap_keeps_freed else ALLOCATOR_SLACK.get(device, 0.1)
    parts["allocator"] = int((live - parts["weights"]) * slack)
    parts["framework"] = FRAMEWORK_BYTES.get(device, FRAMEWORK_BYTES["cpu"])
    return parts


# ----------------------------------------------------------------------------- choosing within a budget

@dataclass
class MemoryPlan:
    device: str
    setup: Setup
    parts: dict[str, int]
    budget: int | None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # set when nothing fits: what to change
    batching: str = "packed"  # the batching mode whose rows were planned (train/packing.py Batching)

    @property
    def peak(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.problem is None

    def table(self) -> list[str]:
        lines = [f"  {name:<12}{format_bytes(size):>10}" for name, size in self.parts.items() if size]
        lines.append(f"  {'peak':<12}{format_bytes(self.peak):>10}"
                     + (f"   (budget {format_bytes(self.budget)})" if self.budget else ""))
        return lines

    def summary(self) -> str:
        s = self.setup
        return (f"Memory plan: ~{format_bytes(self.peak)} peak on {self.device}"
                + (f" of {format_bytes(self.budget)}" if self.budget else "")
                + f"; micro-batch {s.batch_size} x grad_accum {s.grad_accum}, "
                + f"gradient checkpointing {'on' if s.checkpointing else 'off'}, loss chunk {s.loss_chunk_size}")

    def to_json(self) -> dict:
        s = self.setup
        return {"device": self.device, "peak_bytes": self.peak, "budget_bytes": self.budget,
                "parts": self.parts, "batch_size": s.batch_size, "grad_accum": s.grad_accum,
                "gradient_checkpointing": s.checkpointing, "loss_chunk_size": s.loss_chunk_size,
                "row_tokens": s.row_tokens, "batching": self.batching, "notes": self.notes, "optimizer": s.optimizer,
                "objective": s.objective, "sequences_per_example": s.rows_per_example,
                "no_grad_forward_passes": s.no_grad_passes}

    def preference_line(self) -> str | None:
        """What a preference objective adds to each step, for `ducktune plan` and the train log."""
        s = self.setup
        if s.objective == "sft":
            return None
        rows = s.batch_size * s.rows_per_example
        line = f"{s.objective}: {s.rows_per_example} sequence(s) per example ({rows} rows per micro-batch)"
        if s.no_grad_passes:
            # A trained forward + backward costs about 3 forwards; each no-grad pass adds one (or a fraction).
            extra = s.no_grad_passes * s.no_grad_rows_per_example / (3 * s.rows_per_example)
            line += (f"; {s.no_grad_passes} no-grad forward pass(es) per micro-batch for the reference (the "
                     "frozen starting point: the base model, or model.adapter when set), "
                     f"~{extra:.0%} more compute, run before the trained pass")
        else:
            line += "; no reference model"
        return line


# Relative time of an optimizer step, for choosing among setups that fit. Checkpointing recomputes
# each layer's forward in backward: one more forward on top of forward + backward (~3 forwards),
# +33 % (measured on SmolLM2, CPU, one thread: +35 % CPU time, micro-batch 4 with it vs 1 without).
CHECKPOINTING_COST = 4 / 3
# Fixed cost of one micro-batch, in tokens of work: the kernels' launch and Python overhead that a
# smaller micro-batch pays more often. CPU: measured ~0 (SmolLM2, 512-token rows: micro-batch 1 x 4
# and 2 x 2 took the same CPU time, 56.5 s vs 56.9 s); kept small so ties go to the larger micro-batch.
# GPUs: an assumption, not measured here (no GPU): small micro-batches leave a GPU underused, so
# halving a micro-batch twice (or more) costs more than checkpointing it whole.
MICRO_BATCH_OVERHEAD_TOKENS = {"cpu": 32, "cuda": 512, "mps": 512}


def step_cost(setup: Setup, device: str) -> float:
    """Relative time per trained token of a setup (1.0: no checkpointing, no per-micro-batch overhead)."""
    overhead = MICRO_BATCH_OVERHEAD_TOKENS.get(device, MICRO_BATCH_OVERHEAD_TOKENS["cpu"])
    return (CHECKPOINTING_COST if setup.checkpointing else 1.0) * (1 + overhead / max(1, setup.tokens))


def within(parts: dict[str, int], budget: int) -> bool:
    """Whether an estimate fits a budget with PLAN_HEADROOM to spare."""
    return sum(parts.values()) * (1 + PLAN_HEADROOM) <= budget


def choose(shape: ModelShape, wanted: Setup, device: str, budget: int | None,
           checkpointing: str = "auto", qlora_available: bool = False,
           row_tokens_at: dict[int, int] | None = None, packed: bool = False) -> MemoryPlan:
    """The fastest setup that fits `budget` with PLAN_HEADROOM to spare (None: the wanted setup,
    with checkpointing off unless asked for).

    Candidates: the configured micro-batch and halvings of it (gradient accumulation raised to keep
    the global batch), with and without gradient checkpointing, each with the largest loss chunk
    that fits (a smaller chunk costs next to nothing in speed). Among those that fit, the one with
    the lowest step_cost: on CPU any micro-batch without checkpointing before checkpointing.
    row_tokens_at: tokens per row of the heaviest micro-batch of each size (a smaller micro-batch
    can hold only the longest rows: its rows are longer than the wanted one's on average).
    """
    global_batch = wanted.batch_size * wanted.grad_accum
    options = {"auto": (False, True), "off": (False,), "on": (True,)}[checkpointing]
    batches = [wanted.batch_size]
    while batches[-1] > wanted.min_batch_size:
        batches.append(max(wanted.min_batch_size, batches[-1] // 2))

    def candidate(batch: int, ckpt: bool) -> Setup:
        accum = max(1, math.ceil(global_batch / batch))
        rows = (row_tokens_at or {}).get(batch, wanted.row_tokens)
        return replace(wanted, batch_size=batch, grad_accum=accum, checkpointing=ckpt, row_tokens=rows)

    notes = []
    # Packed rows restart their positions with each sample (packing.VarlenCollator): only unpacked rows
    # are bounded by the model's positions.
    if shape.max_positions and not packed and wanted.row_tokens > shape.max_positions:
        notes.append(f"rows of {wanted.row_tokens} tokens exceed the model's {shape.max_positions} positions; "
                     f"lower data.cutoff_len to {shape.max_positions}")
    if budget is None:
        setup = candidate(wanted.batch_size, options[0])
        return MemoryPlan(device, setup, estimate(shape, setup, device), None, notes)

    chunks = [wanted.loss_chunk_size] + [c for c in (512, 256, 128) if c < wanted.loss_chunk_size]
    fitting = []
    for ckpt in options:
        for batch in batches:
            for chunk in chunks:
                setup = replace(candidate(batch, ckpt), loss_chunk_size=chunk)
                parts = estimate(shape, setup, device)
                if within(parts, budget):
                    fitting.append((step_cost(setup, device), len(fitting), setup, parts))
                    break  # the largest chunk that fits this micro-batch
    if fitting:
        _cost, _order, setup, parts = min(fitting)
        without = any(not other.checkpointing for _c, _o, other, _p in fitting)
        return MemoryPlan(device, setup, parts, budget, notes + _explain(wanted, setup, checkpointing, without))

    smallest = replace(candidate(batches[-1], options[-1]), loss_chunk_size=chunks[-1])
    parts = estimate(shape, smallest, device)
    advice = []
    if wanted.method == "lora" and qlora_available:
        q = estimate(shape, replace(smallest, method="qlora"), device)
        if within(q, budget):
            advice.append(f"set train.method=qlora (~{format_bytes(sum(q.values()))})")
    longest = _longest_row_that_fits(shape, smallest, device, budget)
    if longest:
        advice.append(f"lower data.cutoff_len to {longest}")
    if not options[-1]:
        advice.append("set train.gradient_checkpointing=auto")
    advice.append("use a smaller model" if not advice else "")
    problem = (f"needs ~{format_bytes(sum(parts.values()))} (+{PLAN_HEADROOM:.0%} headroom) even at micro-batch "
               f"{smallest.batch_size}" + (" with gradient checkpointing" if options[-1] else "")
               + f", but only {format_bytes(budget)} is available; " + " or ".join(a for a in advice if a))
    return MemoryPlan(device, smallest, parts, budget, notes, problem)


def _explain(wanted: Setup, chosen: Setup, checkpointing: str, fits_without: bool = False) -> list[str]:
    notes = []
    if chosen.loss_chunk_size != wanted.loss_chunk_size:
        notes.append(f"loss chunks of {chosen.loss_chunk_size} tokens instead of {wanted.loss_chunk_size}: "
                     "a smaller [chunk x vocab] block, same speed")
    if chosen.batch_size != wanted.batch_size:
        notes.append(f"micro-batch {wanted.batch_size} does not fit: using {chosen.batch_size} with gradient "
                     f"accumulation {chosen.grad_accum} (global batch kept at {chosen.batch_size * chosen.grad_accum})")
    if chosen.checkpointing and checkpointing == "auto":
        notes.append("gradient checkpointing on: faster on this device than a smaller micro-batch without it"
                     if fits_without else "gradient checkpointing on: activations of every layer do not fit otherwise")
    elif not chosen.checkpointing and checkpointing == "auto":
        notes.append("gradient checkpointing off: everything fits without it (faster)")
    return notes


def _longest_row_that_fits(shape: ModelShape, setup: Setup, device: str, budget: int) -> int | None:
    low, high = 0, setup.row_tokens
    while high - low > 16:
        mid = (low + high) // 2
        if within(estimate(shape, replace(setup, row_tokens=mid), device), budget):
            low = mid
        else:
            high = mid
    return (low // 16) * 16 if low >= 64 else None


# ----------------------------------------------------------------------------- from a run config

DEFAULT_LOSS_CHUNK = 1024
LOSS_CHUNK_BYTES = 256 * 2 ** 20


def auto_loss_chunk(vocab: int) -> int:
    """The largest power of two (128..4096) whose [chunk x vocab] fp32 logits fit LOSS_CHUNK_BYTES.

    Larger chunks only save a little Python overhead per chunk; past ~100 MB the block is a
    noticeable share of a small model's peak (a 1024 x 151,936 block is 594 MiB).
    """
    chunk = 4096
    while chunk > 128 and chunk * vocab * 4 > LOSS_CHUNK_BYTES:
        chunk //= 2
    return chunk


# torch has a fused AdamW (one kernel per tensor instead of ~10 small ops) for these devices, and
# transformers 5 defaults to it there. A LoRA step updates hundreds of small tensors (420 on
# SmolLM2-135M): on a 2-core CPU the update went from 23 ms to 9 ms per step (micro-benchmark,
# medians of 20 steps with gradient clipping, 2026-12-04).
FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps")


def optimizer_for(requested: str, device: str) -> str:
    """transformers' optimizer name for train.optimizer on `device` (auto: fused AdamW where torch has it)."""
    if requested != "auto":
        return requested
    return "adamw_torch_fused" if device in FUSED_ADAMW_DEVICES else "adamw_torch"


def setup_from_config(config, row_tokens: int | None = None, trained_fraction: float = 0.5,
                      dataset_tokens: int = 0, dtype: str = "float32", device: str = "cpu") -> Setup:
    """The Setup a RunConfig asks for. row_tokens: the heaviest micro-batch's tokens per row
    (default: full rows of data.cutoff_len, what packing produces); device: where it trains (picks the optimizer)."""
    tc, lora = config.train, config.lora
    rows, passes, pass_rows, min_batch = PREFERENCE_PASSES[tc.objective]
    return Setup(
        objective=tc.objective,
        rows_per_example=rows,
        no_grad_passes=passes,
        no_grad_rows_per_example=pass_rows,
        min_batch_size=min_batch,
        method=tc.method,
        dtype=dtype,
        batch_size=tc.batch_size,
        grad_accum=tc.grad_accum,
        row_tokens=row_tokens or config.data.cutoff_len,
        trained_fraction=trained_fraction,
        checkpointing=tc.gradient_checkpointing == "on",
        lora_r=lora.r,
        lora_targets=None if lora.target_modules == "all-linear" else tuple(lora.target_modules),
        lora_dropout=lora.dropout if tc.objective == "sft" else 0.0,  # preference runs switch dropout off
        optimizer=optimizer_for(tc.optimizer, device),
        loss_chunk_size=tc.loss_chunk_size or DEFAULT_LOSS_CHUNK,
        dataset_tokens=dataset_tokens,
        heap_returned=heap_returns_memory(config),
        # the addmm path runs where PEFT's plain layer would and nothing autocasts (train/lora_addmm.py)
        lora_addmm=lora.fused and tc.method == "lora" and not lora.use_dora and dtype == "float32",
    )


def heap_returns_memory(config) -> bool:
    """Whether a CPU run gives freed buffers back to the OS at once (recipe: return_freed_memory_to_os):
    only under an explicit train.memory_budget, where the peak must follow the plan closely; without
    one, glibc's default heap is faster (page faults on every large buffer cost 25-40 % of a
    SmolLM2 step on 2 cores) and the plan counts the memory it keeps (UNRETURNED_HEAP_SLACK)."""
    from ducktune.train.memory_probe import freed_memory_returns_to_os

    return bool(config.train.memory_budget) and freed_memory_returns_to_os()


def plan_run(config, model_config: dict, device: str, dtype: str, rows: list[dict] | None,
             budget: int | None, keep: dict | None = None, batching: str | None = None) -> MemoryPlan:
    """The plan for a RunConfig. rows: its tokenized samples (None: assume full rows of
    data.cutoff_len, every token trained). keep: a resumed run's recorded plan, whose
    micro-batch, accumulation and checkpointing must not change. batching: the mode rows are
    batched in (packed | padding-free | padded; None: what config.json lets us expect)."""
    import importlib.util

    from ducktune.train.packing import expected_batching, longest_sample_tokens

    tc = config.train
    longest = longest_sample_tokens(rows) if rows and tc.objective == "sft" else None
    batching = batching or expected_batching(model_config, tc.packing, config.model.trust_remote_code, device, longest)
    if tc.objective != "sft":
        from ducktune.train.preference import plan_rows

        # Preference rows are padded, never packed; each example is several sequences.
        batching = "pairs" if tc.objective != "kto" else "unpaired"
        rows = plan_rows(rows) if rows else rows
    if rows:
        lengths = [len(r["input_ids"]) for r in rows]
        tokens = sum(lengths)
        trained = sum(trained_token_count(r["labels"]) for r in rows)
        per_example = PREFERENCE_PASSES[tc.objective][0]
        # Every micro-batch size the plan may choose (halvings of the configured or kept one).
        sizes = {b for start in (tc.batch_size, (keep or {}).get("batch_size", tc.batch_size))
                 for b in _halvings(start)}
        by_rows = heaviest_row_tokens_by_batch(lengths, sorted(b * per_example for b in sizes),
                                               config.data.cutoff_len, batching)
        row_tokens_at = {b: by_rows[b * per_example] for b in sizes}
        wanted = setup_from_config(config, row_tokens_at[tc.batch_size], trained / max(tokens, 1), tokens, dtype,
                                   device)
    else:
        row_tokens_at = None
        wanted = setup_from_config(config, None, 1.0, 0, dtype, device)
    shape = ModelShape.from_config(model_config)
    if tc.loss_chunk_size is None:
        wanted = replace(wanted, loss_chunk_size=auto_loss_chunk(shape.vocab))
    checkpointing = tc.gradient_checkpointing
    if keep:
        wanted = replace(wanted, batch_size=keep["batch_size"], grad_accum=keep["grad_accum"])
        checkpointing = "on" if keep["gradient_checkpointing"] else "off"
    if keep and row_tokens_at:
        wanted = replace(wanted, row_tokens=row_tokens_at[wanted.batch_size])
    memory = choose(shape, wanted, device, budget, checkpointing,
                    qlora_available=importlib.util.find_spec("bitsandbytes") is not None, row_tokens_at=row_tokens_at,
                    packed=batching == "packed")
    memory.batching = batching
    if keep and memory.fits and memory.setup.batch_size != wanted.batch_size:
        memory.problem = (f"the run being resumed uses micro-batch {wanted.batch_size}, which no longer fits in "
                          f"{format_bytes(budget)}; free memory, or set output.overwrite=true to start afresh")
    return memory


def _halvings(batch: int) -> list[int]:
    """batch, batch // 2, ... down to 1: the micro-batches choose() tries."""
    sizes = [batch]
    while sizes[-1] > 1:
        sizes.append(max(1, sizes[-1] // 2))
    return sizes


# Padded batches are padded to a multiple of this (train/packing.py Batching.collator).
PAD_TO_MULTIPLE_OF = 8


def heaviest_row_tokens(lengths: list[int], batch_size: int, cutoff: int, batching: str) -> int:
    """Tokens per row of the heaviest micro-batch (batch_size rows of this many tokens).

    packed: rows are best-fit bins of samples; padding-free: one sample per row, flattened;
    both hold the tokens of the batch_size largest rows. padded: every row is padded to the
    longest sample (length-grouped batches put the longest ones together)."""
    return heaviest_row_tokens_by_batch(lengths, [batch_size], cutoff, batching)[batch_size]


def heaviest_row_tokens_by_batch(lengths: list[int], batch_sizes: list[int], cutoff: int,
                                 batching: str) -> dict[int, int]:
    """heaviest_row_tokens for each micro-batch size, the rows packed once."""
    if not lengths:
        return {b: cutoff for b in batch_sizes}
    if batching in ("padded", "pairs", "unpaired"):
        m = PAD_TO_MULTIPLE_OF
        return {b: (max(lengths) + m - 1) // m * m for b in batch_sizes}
    if batching == "packed":
        from ducktune.train.packing import best_fit_decreasing

        rows = sorted((sum(lengths[i] for i in b) for b in best_fit_decreasing(lengths, cutoff)), reverse=True)
    else:
        rows = sorted(lengths, reverse=True)
    return {b: max(1, math.ceil(sum(rows[:b]) / b)) for b in batch_sizes}


# ----------------------------------------------------------------------------- for `ducktune train`

def plan_memory(config, model_config: dict, placement, train_rows: list[dict], keep: dict | None = None,
                batching: str | None = None, log=print) -> MemoryPlan:
    """Plan this run's memory within train.memory_budget or the free memory (plan_run's
    keep and batching). Raises ConfigError, in one line saying what to change, when nothing fits.
    """
    from ducktune.errors import ConfigError
    from ducktune.train.memory_probe import available_memory, freed_memory_returns_to_os

    try:
        budget = parse_memory(config.train.memory_budget) if config.train.memory_budget \
            else available_memory(placement.device)
    except ValueError as exc:
        raise ConfigError(f"train.memory_budget: {exc}") from None
    memory = plan_run(config, model_config, placement.device, placement.dtype, train_rows, budget,
                      keep=keep, batching=batching)
    if config.train.objective == "sft" and (problem := rows_past_context(model_config, train_rows,
                                                                          config.data.cutoff_len)):
        raise ConfigError(problem)
    if not memory.fits:
        raise ConfigError(f"memory plan: {memory.problem}")
    if config.train.memory_budget and placement.device == "cpu" and not freed_memory_returns_to_os():
        memory.notes.append(f"this platform's allocator keeps freed memory (no glibc): the plan adds "
                            f"{UNRETURNED_HEAP_SLACK:.0%} of the activations for it, an estimate")
    log(memory.summary())
    for note in memory.notes:
        log(f"  {note}")
    return memory


def rows_past_context(model_config: dict, rows: list[dict], cutoff: int) -> str | None:
    """Why these samples cannot train on this model, when one is longer than its positions
    (max_position_embeddings): rotary models train on positions they were never made for (a silent
    mess), learned position tables fail. Packed rows may be longer: their positions restart with each
    sample (packing.VarlenCollator). None when every sample fits."""
    limit = ModelShape.from_config(model_config).max_positions
    if not limit or not rows:
        return None
    longest = max(len(r["input_ids"]) for r in rows)
    if longest <= limit:
        return None
    return (f"data.cutoff_len={cutoff}: samples of up to {longest} tokens exceed the model's {limit} positions "
            f"(max_position_embeddings in its config.json); set data.cutoff_len to {limit} or less")


def recorded_plan(config) -> dict | None:
    """The memory plan recorded by an unfinished run in output.dir (None: nothing to resume)."""
    import json
    from pathlib import Path

    run_json = Path(config.output.dir) / "run.json"
    if config.output.overwrite or not run_json.is_file():
        return None
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return info.get("memory_plan") if info.get("status") != "completed" else None
