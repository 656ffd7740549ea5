"""Preference tuning (train.objective dpo | orpo | simpo | kto) on the SFT recipe's Trainer.

What differs from supervised fine-tuning, and nothing else:

- batches: a micro-batch of B pairs is one padded batch of 2B rows, the B chosen answers then
  the B rejected ones, so one forward pass serves both (`PairCollator`). KTO's rows are single
  answers labelled good/bad, plus a mismatched copy of each (its prompt with a neighbour's answer)
  for KTO's KL reference point (`UnpairedCollator`);
- the loss (`PreferenceObjective`): per-sequence log-probabilities of the answer tokens (labels
  != IGNORE_INDEX), through the chunked head of loss.py (no [rows x tokens x vocab] logits), into
  the pure losses of preference_loss.py;
- the reference model is the same weights with the LoRA adapter switched off (or, when training
  continues a given adapter, that adapter's frozen copy: only adapter weights are duplicated). Its
  pass runs first, under torch.no_grad, so its memory is freed before the policy's activations
  build up (train/plan.py counts it);
- the metrics TRL logs (rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies,
  logps/chosen, logps/rejected; kl for KTO) are averaged over each logging window and written to
  metrics.jsonl by the usual MetricsWriter.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ducktune.config import REFERENCE_OBJECTIVES
from ducktune.data.template import IGNORE_INDEX
from ducktune.train import preference_loss as pl
from ducktune.train.collator import PaddingCollator
from ducktune.train.lora import REFERENCE_ADAPTER
from ducktune.train.loss import forward_hidden, linear_cross_entropy, unwrap_peft

PAD_TO_MULTIPLE_OF = 8


# ----------------------------------------------------------------------------- batching

def _pad(sequences: list[list[int]], labels: list[list[int]], pad_token_id: int) -> dict:
    """Right-padded rows as the SFT padded batches build them."""
    return PaddingCollator(pad_token_id, PAD_TO_MULTIPLE_OF)(
        [{"input_ids": seq, "labels": lab} for seq, lab in zip(sequences, labels)])


@dataclass
class PairCollator:
    """B pairs -> one batch of 2B rows: chosen answers first, then rejected (right-padded)."""

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict:
        sequences = [f["chosen_input_ids"] for f in features] + [f["rejected_input_ids"] for f in features]
        labels = [f["chosen_labels"] for f in features] + [f["rejected_labels"] for f in features]
        return _pad(sequences, labels, self.pad_token_id)


@dataclass
class UnpairedCollator:
    """KTO: B answers with their good/bad label, and B mismatched rows for the KL estimate: row i's
    prompt followed by the answer of the nearest earlier row with another prompt (row i-1 unless it
    shares the prompt: a pair's good and bad answers sit side by side, and evaluation reads rows in
    order, so i-1 would often be a matched answer), cut at `cutoff` tokens."""

    pad_token_id: int
    cutoff: int

    def __call__(self, features: list[dict]) -> dict:
        batch = _pad([f["completion_input_ids"] for f in features], [f["completion_labels"] for f in features],
                     self.pad_token_id)
        kl_ids, kl_labels = [], []
        prompts = [list(f["completion_input_ids"][:f["prompt_len"]]) for f in features]
        for i, f in enumerate(features):
            shift = next((k for k in range(1, len(features)) if prompts[i - k] != prompts[i]), 1)
            other = features[i - shift]
            prompt = prompts[i]
            start = other["prompt_len"]
            kl_ids.append((prompt + list(other["completion_input_ids"][start:]))[:self.cutoff])
            kl_labels.append(([IGNORE_INDEX] * len(prompt) + list(other["completion_labels"][start:]))[:self.cutoff])
        kl = _pad(kl_ids, kl_labels, self.pad_token_id)
        batch.update({f"kl_{k}": v for k, v in kl.items()})
        batch["desirable"] = torch.tensor([bool(f["label"]) for f in features])
        return batch


class PreferenceBatching:
    """The batching a preference run uses, with the interface of packing.Batching (mode, reason,
    previous_attention, dataset, collator): rows are never packed, so the model's attention is
    left as it is."""

    def __init__(self, objective: str, attention: str):
        self.objective = objective
        self.mode = "pairs" if objective != "kto" else "unpaired"
        self.reason = ("chosen and rejected padded into one batch" if objective != "kto"
                       else "good/bad answers with mismatched copies for the KL term")
        self.previous_attention = attention
        self._cutoff = None

    def dataset(self, rows: list[dict], cutoff: int):
        from ducktune.train.packing import ListDataset

        self._cutoff = cutoff
        return ListDataset(rows)

    def collator(self, pad_token_id: int):
        if self.objective == "kto":
            return UnpairedCollator(pad_token_id, self._cutoff or 10**9)
        return PairCollator(pad_token_id)


# ----------------------------------------------------------------------------- log-probabilities

def sequence_logps(model, input_ids, attention_mask, labels, chunk_size: int | None):
    """(sum of log p(label) over each row's labelled positions [rows], labelled positions per row).

    chunk_size: the chunked head of loss.py on labelled positions only (the decoder called without
    its LM head); None: the model's own logits (architectures whose logits are not a plain head,
    or a model wrapped for distributed training).
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    tokens = keep.sum(dim=1)
    if chunk_size is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1].float()
        per_token = torch.log_softmax(logits, dim=-1).gather(2, targets.clamp(min=0)[..., None]).squeeze(2)
        return (per_token * keep).sum(dim=1), tokens
    hidden = forward_hidden(model, {"input_ids": input_ids, "attention_mask": attention_mask})[:, :-1]
    head = unwrap_peft(model).get_output_embeddings()
    rows = [-linear_cross_entropy(hidden[i][keep[i]], head.weight, head.bias, targets[i][keep[i]], chunk_size)
            for i in range(input_ids.shape[0])]
    return torch.stack(rows), tokens


def unwrap_distributed(model):
    """The model inside a DDP/FSDP wrapper (they keep it as `.module`)."""
    return getattr(model, "module", model)


@contextlib.contextmanager
def reference_weights(model, adapter_name: str | None):
    """The reference model, in place: the LoRA adapter switched off (adapter_name None), or the
    frozen copy of a continued adapter made active. Restores the trained adapter afterwards."""
    peft_model = model
    if adapter_name is None:
        with peft_model.disable_adapter():
            yield
        return
    trained = peft_model.active_adapter
    peft_model.set_adapter(adapter_name, inference_mode=True)
    try:
        yield
    finally:
        peft_model.set_adapter(trained)


# ----------------------------------------------------------------------------- the micro-batch loss

@dataclass
class PreferenceObjective:
    """The micro-batch loss of a preference run: (loss, metrics) for one collated batch.

    The Trainer averages these per-micro-batch means over gradient accumulation (as TRL does), so
    `scaled_for_accumulation` is False; the model may be wrapped for distributed training (then the
    model's own logits are used)."""

    objective: str
    beta: float
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    orpo_lambda: float = 0.1
    rpo_alpha: float = 0.0
    simpo_gamma: float = 0.5
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    chunk_size: int | None = 1024
    reference_adapter: str | None = None

    scaled_for_accumulation = False
    handles_wrapped_models = True

    @classmethod
    def from_config(cls, config, chunk_size: int | None, reference_adapter: str | None) -> "PreferenceObjective":
        p, objective = config.preference, config.train.objective
        return cls(objective, p.beta_for(objective), p.loss_type, p.label_smoothing, p.orpo_lambda, p.rpo_alpha,
                   p.simpo_gamma, p.desirable_weight, p.undesirable_weight, chunk_size, reference_adapter)

    def _logps(self, model, batch: dict, prefix: str = ""):
        # A distributed wrapper (DDP, FSDP) must run its own forward for its gradient hooks: full logits then.
        chunk = self.chunk_size if unwrap_distributed(model) is model else None
        return sequence_logps(model, batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"],
                              batch[f"{prefix}labels"], chunk)

    def _reference_logps(self, model, batch: dict, prefix: str = ""):
        plain = unwrap_distributed(model)
        with torch.no_grad(), reference_weights(plain, self.reference_adapter):
            return sequence_logps(plain, batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"],
                                  batch[f"{prefix}labels"], self.chunk_size)[0]

    def __call__(self, model, batch: dict, num_items=None):
        if self.objective == "kto":
            return self._kto(model, batch)
        # The reference pass first: its memory is freed before the policy's activations build up.
        reference = self._reference_logps(model, batch) if self.objective == "dpo" else None
        logps, tokens = self._logps(model, batch)
        half = logps.shape[0] // 2
        chosen, rejected = logps[:half], logps[half:]
        chosen_tokens, rejected_tokens = tokens[:half], tokens[half:]
        if self.objective == "dpo":
            pairs = pl.dpo_loss(chosen, rejected, reference[:half], reference[half:], beta=self.beta,
                                loss_type=self.loss_type, label_smoothing=self.label_smoothing,
                                chosen_tokens=chosen_tokens, rejected_tokens=rejected_tokens)
            # RPO: DPO may widen the margin by lowering both answers; the answer loss keeps chosen likely.
            loss = pl.rpo_loss(pairs, chosen, chosen_tokens, alpha=self.rpo_alpha) if self.rpo_alpha else pairs.loss
        else:
            chosen_avg = chosen / chosen_tokens.clamp(min=1)
            rejected_avg = rejected / rejected_tokens.clamp(min=1)
            if self.objective == "orpo":
                pairs, loss = pl.orpo_loss(chosen_avg, rejected_avg, pl.chosen_nll(chosen, chosen_tokens),
                                           lam=self.orpo_lambda)
            else:
                pairs = pl.simpo_loss(chosen_avg, rejected_avg, beta=self.beta, gamma=self.simpo_gamma,
                                      label_smoothing=self.label_smoothing)
                loss = pairs.loss
            chosen, rejected = chosen_avg, rejected_avg  # TRL logs the averaged logps for these
        return loss, pl.reward_metrics(pairs, chosen, rejected)

    def _kto(self, model, batch: dict):
        reference = self._reference_logps(model, batch)
        reference_kl = self._reference_logps(model, batch, "kl_")
        with torch.no_grad():
            kl_logps = self._logps(model, batch, "kl_")[0]
        logps, _ = self._logps(model, batch)
        desirable = batch["desirable"].to(logps.device)
        kl = pl.kto_kl(kl_logps, reference_kl)
        pairs = pl.kto_loss(logps, reference, desirable, kl, beta=self.beta, desirable_weight=self.desirable_weight,
                            undesirable_weight=self.undesirable_weight)
        metrics = pl.reward_metrics(pairs, logps[desirable], logps[~desirable], paired=False)
        metrics["kl"] = kl.item()
        return pairs.losses.nanmean(), metrics


# ----------------------------------------------------------------------------- data

def pair_stats(rows: list[dict], extra: dict | None = None) -> dict:
    """run.json's data figures for preference rows: every sequence counts (chosen and rejected)."""
    sequences = [(r[f"{side}_input_ids"], r[f"{side}_labels"]) for r in rows
                 for side in (("chosen", "rejected") if "chosen_input_ids" in r else ("completion",))]
    lengths = sorted(len(ids) for ids, _ in sequences)
    stats = {"samples": len(rows), "truncated": 0, "dropped": 0, "template_errors": 0,
             "tokens": sum(lengths), "trained_tokens": sum(sum(1 for x in labels if x != IGNORE_INDEX)
                                                           for _, labels in sequences),
             "max_len": lengths[-1] if lengths else 0, "median_len": lengths[len(lengths) // 2] if lengths else 0}
    for key in ("truncated", "dropped", "template_errors"):
        if extra and key in extra:
            stats[key] = extra[key]
    return stats


def unpaired_rows(rows: list[dict]) -> list[dict]:
    """KTO rows: a pair gives a good and a bad answer to the same prompt; unpaired rows pass through."""
    out = []
    for r in rows:
        if "chosen_input_ids" not in r:
            out.append(r)
            continue
        for side, good in (("chosen", True), ("rejected", False)):
            out.append({"completion_input_ids": r[f"{side}_input_ids"], "completion_labels": r[f"{side}_labels"],
                        "label": good, "prompt_len": r["prompt_len"]})
    return out


def load_preference_samples(config, chat_format):
    """The configured data as preference samples (data.loader's preference mode)."""
    from ducktune.data.loader import load_data

    return load_data(config.data, seed=config.train.seed, chat_format=chat_format, objective="preference")


def tokenize_preference_data(config, samples, chat_format, skip_bad: bool) -> tuple[list[dict], dict]:
    """(rows for the objective, stats). Raises DataError for unusable samples unless skip_bad."""
    from ducktune.data.preference import tokenize_preference

    from ducktune.errors import DataError

    rows, stats, _ = tokenize_preference(samples, chat_format, config.data.cutoff_len, skip_bad)
    if config.train.objective == "kto":
        rows = unpaired_rows(rows)
    else:
        unpaired = sum(1 for r in rows if "chosen_input_ids" not in r)
        if unpaired:
            raise DataError(f"{unpaired} samples are single answers labelled good/bad (KTO data), but train.objective "
                            f"{config.train.objective} needs chosen/rejected pairs; set train.objective=kto")
    return rows, pair_stats(rows, stats)


def prepare_preference_data(config, chat_format, log) -> tuple:
    """recipe.PreparedData's fields for a preference run: (train rows, validation rows, stats, bad
    records skipped, duplicates removed, probe prompts, samples with tools, the probe prompts' tools).
    Every problem is reported before anything is written."""
    from ducktune.data.loader import unused_note
    from ducktune.errors import DataError
    from ducktune.train.tokenize import probe_prompts, probe_tools

    dc = config.data
    data = load_preference_samples(config, chat_format)
    train_rows, stats = tokenize_preference_data(config, data.train, chat_format, dc.skip_bad)
    val_rows, _ = tokenize_preference_data(config, data.val, chat_format, dc.skip_bad) if data.val else ([], {})
    if not train_rows:
        raise DataError("no preference examples left after templating and the cutoff "
                        f"(data.cutoff_len={dc.cutoff_len}); raise the cutoff or check the data")
    kind = "answers (good/bad)" if config.train.objective == "kto" else "pairs"
    skipped = data.skipped + stats.get("template_errors", 0)
    log(f"Data: {len(train_rows)} train / {len(val_rows)} validation {kind}, {stats['trained_tokens']} trained tokens"
        + (f"; {stats['truncated']} truncated at {dc.cutoff_len} tokens" if stats["truncated"] else "")
        + (f"; {skipped} bad records skipped" if skipped else ""))
    if note := unused_note(data):
        log(f"Note: {note}")
    prompts = probe_prompts(config, data.train)
    return (train_rows, val_rows, stats, skipped, data.duplicates_removed, prompts,
            sum(1 for s in data.train if s.uses_tools), probe_tools(config, data.train, prompts))


def plan_rows(rows: list[dict]) -> list[dict]:
    """The sequences a preference micro-batch really holds, as {input_ids, labels} rows for the
    memory plan: both answers of a pair; a KTO answer and its mismatched KL copy (about as long)."""
    out = []
    for r in rows:
        for side in (("chosen", "rejected") if "chosen_input_ids" in r else ("completion", "completion")):
            out.append({"input_ids": r[f"{side}_input_ids"], "labels": r[f"{side}_labels"]})
    return out


# ----------------------------------------------------------------------------- for the recipe

def disable_dropout(model) -> bool:
    """Set every dropout of the model (LoRA's included) to 0; True when one was on."""
    changed = False
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p > 0:
            module.p = 0.0
            changed = True
    return changed


def choose_preference_loss(config):
    """choose_loss(model, chunk_size, log) -> PreferenceObjective for this config: the chunked head
    when this model's logits are a plain head over its hidden states (loss.verify_head), else the
    model's own logits."""

    def choose(model, chunk_size: int, log=print) -> PreferenceObjective:
        from ducktune.train.loss import choose_loss

        chunked = choose_loss(model, chunk_size, log=log) is not None
        continued = config.model.adapter and config.train.objective in REFERENCE_OBJECTIVES
        reference = REFERENCE_ADAPTER if continued else None
        return PreferenceObjective.from_config(config, chunk_size if chunked else None, reference)

    return choose


def choose_preference_batching_and_loss(model, config, memory, choose_loss, log):
    """(PreferenceBatching, PreferenceObjective) for a preference run (recipe step
    _setup_batching_and_loss); choose_loss(model, chunk_size, log) defaults to
    choose_preference_loss(config)."""
    attention = unwrap_peft(model).config._attn_implementation
    batching = PreferenceBatching(config.train.objective, attention)
    if disable_dropout(model):
        log("Dropout off (as in TRL's preference trainers): the policy and the reference must score answers alike")
    objective = (choose_loss or choose_preference_loss(config))(model, memory.setup.loss_chunk_size, log)
    line = memory.preference_line()
    if line:
        log(line)
    return batching, objective


def pair_rewards(model, rows: list[dict], pad_token_id: int, beta: float = 0.1, batch_size: int = 8,
                 reference_adapter: str | None = None) -> dict:
    """DPO's implied rewards of a LoRA model on preference pairs against its reference (adapter
    off): {"accuracy": share of pairs whose chosen reward is higher, "margin": mean chosen - rejected
    reward, "margins": per pair}. For held-out pairs and tests; no gradients."""
    collate = PairCollator(pad_token_id)
    margins = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            batch = collate(rows[start:start + batch_size])
            args = (batch["input_ids"], batch["attention_mask"], batch["labels"], None)
            with torch.no_grad():
                policy = sequence_logps(model, *args)[0]
                with reference_weights(model, reference_adapter):
                    reference = sequence_logps(model, *args)[0]
            ratio = policy - reference
            half = ratio.shape[0] // 2
            margins += (beta * (ratio[:half] - ratio[half:])).tolist()
    finally:
        model.train(was_training)
    return {"accuracy": sum(m > 0 for m in margins) / max(len(margins), 1),
            "margin": sum(margins) / max(len(margins), 1), "margins": margins}


# ----------------------------------------------------------------------------- for the demo

def base_greedy_answers(config, prompts: list[str], max_new_tokens: int, log=print) -> list[dict]:
    """The base model's greedy answers ({prompt, text, finish_reason}) to `prompts`, generated once
    per base model and cached (chat/general.py, as data.replay's are): the rejected side of pairs
    whose chosen side is the answer to learn."""
    from ducktune.chat.general import base_model_fingerprint, cached_base_answers
    from ducktune.data.template import prompting_chat_format
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import estimate_params, load_tokenizer, model_config
    from ducktune.models.sources import resolve_model

    mc = config.model
    folder = resolve_model(mc.name_or_path, mc.revision, log=log)
    tokenizer = load_tokenizer(folder, mc.chat_template, mc.trust_remote_code, mc.enable_thinking)
    chat_format = prompting_chat_format(tokenizer, folder, mc.system_prompt)
    placement = choose_placement(mc.device, mc.dtype, estimate_params(model_config(folder)))

    def engine_factory():
        from ducktune.chat.engine import ChatEngine
        from ducktune.models.loading import load_model

        return ChatEngine(load_model(folder, placement, trust_remote_code=mc.trust_remote_code), tokenizer,
                          chat_format, name="base")

    model_key = f"{base_model_fingerprint(folder)}/{placement.device}/{placement.dtype}"
    return cached_base_answers(model_key, chat_format, prompts, max_new_tokens, engine_factory, log=log)


def run_pair_rewards(run_dir, pairs: list[dict], beta: float, reference_adapter: str | None = None) -> dict:
    """pair_rewards of a finished run on {prompt, chosen, rejected} records (e.g. held-out pairs).
    reference_adapter: the adapter the run continued (model.adapter), loaded as the reference;
    None: the base model is the reference."""
    from ducktune.chat.engine import ChatEngine
    from ducktune.data.preference import tokenize_preference
    from ducktune.data.schema import Message, Sample
    from ducktune.models.adapter_check import adapter_folder

    engine = ChatEngine.from_run(run_dir, log=lambda *a: None)
    if reference_adapter:
        engine.model.load_adapter(str(adapter_folder(reference_adapter)), adapter_name=REFERENCE_ADAPTER)
        engine.model.set_adapter("default")
    samples = [Sample("preference", messages=[Message("user", p["prompt"])], chosen=p["chosen"], rejected=p["rejected"],
                      where=f"pair {i + 1}") for i, p in enumerate(pairs)]
    rows, _, _ = tokenize_preference(samples, engine.chat_format, 1 << 20, False)
    return pair_rewards(engine.model, rows, engine.tokenizer.pad_token_id, beta=beta,
                        reference_adapter=REFERENCE_ADAPTER if reference_adapter else None)
