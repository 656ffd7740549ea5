"""Our preference losses equal TRL 1.16's on the same batch (|difference| < 1e-5).

TRL computes its losses inside its trainers. The smallest object each needs is built here:
- DPO, KTO: `DPOTrainer._compute_loss` / `KTOTrainer._compute_loss` are called unbound with a
  namespace holding the attributes they read (beta, loss type, an identity "accelerator", the
  metrics store) and a stand-in model that returns fixed per-token log-probabilities (TRL's fused
  LM head output: `log_probs`, zero off the answer, plus the `entropy`/`mean_logits`/`is_top1`
  it logs). With `precompute_ref_logps` the reference log-probabilities come in the batch, so
  both sides see exactly the same numbers; TRL's logged rewards are compared too.
- ORPO, SimPO: `ORPOTrainer.odds_ratio_loss` and `CPOTrainer.cpo_loss` take per-sequence
  log-probabilities already; the full losses are assembled as their `get_batch_loss_metrics` does
  (ORPO: nll - mean(losses); SimPO: mean(losses) + cpo_alpha x nll with cpo_alpha = 0, pure SimPO).
"""

from __future__ import annotations

import types
from collections import defaultdict

import pytest
import torch

from ducktune.train import preference_loss as pl

TOL = 1e-5


class IdentityAccelerator:
    device = torch.device("cpu")

    def gather(self, x):
        return x

    gather_for_metrics = gather


def stand_in_model(per_token_by_width: dict[int, torch.Tensor]):
    """A callable returning TRL's fused-head outputs for a batch, chosen by the batch's width."""

    def model(input_ids=None, labels=None, **kwargs):
        log_probs = per_token_by_width[input_ids.shape[1]]
        zeros = torch.zeros_like(log_probs)
        return types.SimpleNamespace(log_probs=log_probs, entropy=zeros, mean_logits=zeros,
                                     is_top1=zeros.bool(), aux_loss=None)

    model.training = True
    return model


def answer_batch(n: int, width: int, seed: int):
    """completion_mask [n, width] (prompt then answer then padding) and per-token logps [n, width-1]
    that are zero off the answer, as TRL's fused head returns them."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, width, dtype=torch.long)
    for i in range(n):
        prompt = int(torch.randint(1, 4, (1,), generator=gen))
        answer = int(torch.randint(1, width - prompt + 1, (1,), generator=gen))
        mask[i, prompt:prompt + answer] = 1
    per_token = -torch.rand(n, width - 1, generator=gen, dtype=torch.float64).float() * 3 * mask[:, 1:]
    return mask, per_token


def trl_namespace(**attrs):
    base = dict(accelerator=IdentityAccelerator(), _metrics=defaultdict(lambda: defaultdict(list)),
                _total_train_tokens=0, _tp_size=1, aux_loss_enabled=False, precompute_ref_logps=True,
                ref_model=None, args=types.SimpleNamespace(gradient_checkpointing_kwargs=None))
    return types.SimpleNamespace(**(base | attrs))


@pytest.mark.parametrize("loss_type,label_smoothing", [("sigmoid", 0.0), ("hinge", 0.0), ("ipo", 0.0),
                                                       ("robust", 0.2)])
@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("rpo_alpha", [0.0, 0.7])
def test_dpo_equals_trl(loss_type, label_smoothing, beta, rpo_alpha):
    """rpo_alpha: TRL 1.16 spells RPO as a second loss type, "sft" (mean NLL over the chosen answer
    tokens of the batch), weighted by loss_weights."""
    from trl.trainer.dpo_trainer import DPOTrainer

    pairs, width = 5, 9
    mask, per_token = answer_batch(2 * pairs, width, seed=int(beta * 10) + len(loss_type))
    ref = -torch.rand(2 * pairs, generator=torch.Generator().manual_seed(7)) * 10
    model = stand_in_model({width: per_token})
    loss_types, weights = ([loss_type, "sft"], [1.0, rpo_alpha]) if rpo_alpha else ([loss_type], [1.0])
    trl = trl_namespace(model=model, beta=beta, loss_types=loss_types, loss_weights=weights, ld_alpha=None,
                        f_divergence_type="reverse_kl", use_weighting=False, label_smoothing=label_smoothing)
    inputs = {"input_ids": torch.zeros(2 * pairs, width, dtype=torch.long), "attention_mask": torch.ones_like(mask),
              "completion_mask": mask, "ref_chosen_logps": ref[:pairs], "ref_rejected_logps": ref[pairs:]}
    theirs = DPOTrainer._compute_loss(trl, model, inputs, False)

    logps, tokens = per_token.sum(1), mask.sum(1)
    ours = pl.dpo_loss(logps[:pairs], logps[pairs:], ref[:pairs], ref[pairs:], beta=beta, loss_type=loss_type,
                       label_smoothing=label_smoothing, chosen_tokens=tokens[:pairs], rejected_tokens=tokens[pairs:])
    loss = pl.rpo_loss(ours, logps[:pairs], tokens[:pairs], alpha=rpo_alpha) if rpo_alpha else ours.loss
    assert abs(loss.item() - theirs.item()) < TOL
    assert ours.loss.item() != 0.0
    if rpo_alpha:  # the answer term is really there (not a no-op that happens to match)
        assert abs(loss.item() - ours.loss.item()) > 100 * TOL
    metrics = pl.reward_metrics(ours, logps[:pairs], logps[pairs:])
    for key, value in metrics.items():
        assert abs(value - trl._metrics["train"][key][0]) < TOL, key


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.5, 0.7)])
def test_kto_equals_trl(weights):
    from trl.trainer.kto_trainer import KTOTrainer

    n, width, kl_width = 6, 8, 10
    mask, per_token = answer_batch(n, width, seed=3)
    kl_mask, kl_per_token = answer_batch(n, kl_width, seed=4)
    gen = torch.Generator().manual_seed(5)
    ref = -torch.rand(n, generator=gen) * 10
    # A reference below the policy on the mismatched pairs: a positive KL estimate (it is clamped at 0).
    ref_kl = kl_per_token.sum(1) - 0.5 - torch.rand(n, generator=gen)
    desirable = torch.tensor([True, False, True, True, False, False])
    model = stand_in_model({width: per_token, kl_width: kl_per_token})
    trl = trl_namespace(model=model, beta=0.3, loss_type="kto", desirable_weight=weights[0],
                        undesirable_weight=weights[1], calculate_KL=True)
    trl._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, trl)
    inputs = {"input_ids": torch.zeros(n, width, dtype=torch.long), "attention_mask": torch.ones_like(mask),
              "completion_mask": mask, "KL_input_ids": torch.zeros(n, kl_width, dtype=torch.long),
              "KL_attention_mask": torch.ones_like(kl_mask), "KL_completion_mask": kl_mask, "label": desirable,
              "ref_logps": ref, "ref_KL_logps": ref_kl}
    theirs = KTOTrainer._compute_loss(trl, model, inputs, False)

    kl = pl.kto_kl(kl_per_token.sum(1), ref_kl)
    assert kl.item() > 0
    logps = per_token.sum(1)
    ours = pl.kto_loss(logps, ref, desirable, kl, beta=0.3, desirable_weight=weights[0], undesirable_weight=weights[1])
    assert abs(ours.loss.item() - theirs.item()) < TOL
    metrics = pl.reward_metrics(ours, logps[desirable], logps[~desirable], paired=False)
    for key, value in metrics.items():
        assert abs(value - trl._metrics["train"][key][0]) < TOL, key


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_orpo_equals_trl(lam):
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    gen = torch.Generator().manual_seed(11)
    # Average per-token log-probabilities, both near 0 and far from it (log1mexp's two branches).
    chosen = torch.tensor([-0.05, -0.4, -1.2, -3.0, -0.7])
    rejected = torch.tensor([-0.9, -0.02, -2.5, -0.6, -5.0])
    nll = torch.rand((), generator=gen) * 3
    trl = trl_namespace(beta=lam)
    losses, *_ = ORPOTrainer.odds_ratio_loss(trl, chosen, rejected)
    theirs = nll - losses.mean()
    pairs, ours = pl.orpo_loss(chosen, rejected, nll, lam=lam)
    assert abs(ours.item() - theirs.item()) < TOL
    assert abs(pairs.chosen_rewards.mean().item() - lam * chosen.mean().item()) < TOL


@pytest.mark.parametrize("beta,gamma,label_smoothing", [(2.0, 0.5, 0.0), (2.5, 1.0, 0.1), (0.1, 0.0, 0.0)])
def test_simpo_equals_trl(beta, gamma, label_smoothing):
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    chosen = torch.tensor([-0.5, -1.4, -0.2, -2.0])
    rejected = torch.tensor([-0.9, -0.3, -2.5, -2.1])
    trl = trl_namespace(beta=beta, alpha=0.0, loss_type="simpo", simpo_gamma=gamma, label_smoothing=label_smoothing)
    losses, chosen_rewards, _ = CPOTrainer.cpo_loss(trl, chosen, rejected)
    ours = pl.simpo_loss(chosen, rejected, beta=beta, gamma=gamma, label_smoothing=label_smoothing)
    assert abs(ours.loss.item() - losses.mean().item()) < TOL
    assert torch.allclose(ours.chosen_rewards, chosen_rewards)


def test_dpo_loss_pushes_chosen_up_and_rejected_down():
    """The gradient of the DPO loss raises the chosen answer's log-probability and lowers the rejected one's."""
    chosen, rejected = torch.tensor([-5.0], requires_grad=True), torch.tensor([-5.0], requires_grad=True)
    pl.dpo_loss(chosen, rejected, torch.tensor([-5.0]), torch.tensor([-5.0]), beta=0.1).loss.backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()


class TinyPolicy(torch.nn.Module):
    """A stand-in LoRA model for PreferenceObjective: logits from an embedding and a head; the
    "adapter" is a bias on the logits that disable_adapter() switches off (the reference)."""

    def __init__(self, vocab: int = 11, width: int = 6):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, width)
        self.head = torch.nn.Linear(width, vocab)
        self.adapter = torch.nn.Parameter(torch.randn(vocab, generator=gen))
        self.adapter_on = True

    def forward(self, input_ids=None, attention_mask=None, use_cache=False):
        logits = self.head(self.embed(input_ids)) + (self.adapter if self.adapter_on else 0)
        return types.SimpleNamespace(logits=logits)

    def disable_adapter(self):
        import contextlib

        @contextlib.contextmanager
        def off():
            self.adapter_on = False
            try:
                yield
            finally:
                self.adapter_on = True

        return off()


def test_dpo_objective_adds_rpo_alpha_times_the_chosen_answer_loss():
    """preference.rpo_alpha reaches the training loss: DPO + alpha x the mean cross-entropy of the
    chosen answers' tokens (computed here by torch's cross_entropy, not by our log-probabilities)."""
    import torch.nn.functional as F

    from ducktune.config import load_config
    from ducktune.data.template import IGNORE_INDEX
    from ducktune.train.preference import PairCollator, PreferenceObjective

    features = []
    for i, (prompt, chosen, rejected) in enumerate([(3, 4, 2), (2, 5, 3), (4, 2, 6)]):
        ids = [1 + (i + k) % 10 for k in range(prompt + max(chosen, rejected))]
        features.append({"chosen_input_ids": ids[:prompt + chosen],
                         "chosen_labels": [IGNORE_INDEX] * prompt + ids[prompt:prompt + chosen],
                         "rejected_input_ids": ids[:prompt] + [7] * rejected,
                         "rejected_labels": [IGNORE_INDEX] * prompt + [7] * rejected})
    batch = PairCollator(pad_token_id=0)(features)
    model = TinyPolicy()
    config = load_config(None, ["train.objective=dpo", "preference.rpo_alpha=0.7"])
    with_rpo = PreferenceObjective.from_config(config, chunk_size=None, reference_adapter=None)
    assert with_rpo.rpo_alpha == 0.7
    plain = PreferenceObjective.from_config(load_config(None, ["train.objective=dpo"]), None, None)
    loss_rpo, metrics_rpo = with_rpo(model, batch)
    loss_plain, metrics_plain = plain(model, batch)
    chosen = slice(0, len(features))
    logits = model(input_ids=batch["input_ids"][chosen]).logits[:, :-1]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][chosen, 1:].reshape(-1),
                          ignore_index=IGNORE_INDEX)
    assert nll.item() > 0.1
    assert abs((loss_rpo - loss_plain).item() - 0.7 * nll.item()) < TOL
    assert metrics_rpo == metrics_plain  # the rewards TRL logs do not include the answer term
    loss_rpo.backward()  # the answer term trains the adapter
    assert model.adapter.grad is not None and model.adapter.grad.abs().sum() > 0


def test_kto_kl_rows_pair_each_prompt_with_another_prompts_answer():
    """A pair gives KTO a good and a bad row side by side; with row i-1's answer, the bad row's KL row
    was its own prompt with its own good answer (always, in evaluation's in-order batches): the KL
    estimate needs mismatched pairs (TRL shifts across the dataset)."""
    from ducktune.train.preference import UnpairedCollator, unpaired_rows

    pairs = [{"prompt_len": 2, "chosen_input_ids": [p, p, 10 + p], "chosen_labels": [-100, -100, 10 + p],
              "rejected_input_ids": [p, p, 20 + p], "rejected_labels": [-100, -100, 20 + p]} for p in (1, 2, 3)]
    batch = UnpairedCollator(pad_token_id=0, cutoff=16)(unpaired_rows(pairs))
    for row, kl_ids in zip(batch["input_ids"].tolist(), batch["kl_input_ids"].tolist()):
        prompt, kl_prompt, kl_answer = row[:2], kl_ids[:2], kl_ids[2]
        assert kl_prompt == prompt and kl_answer % 10 != prompt[0]  # another prompt's answer
    # A batch whose rows all share one prompt has no other answer: the neighbour's, as before.
    same = UnpairedCollator(pad_token_id=0, cutoff=16)(unpaired_rows(pairs[:1]))
    assert same["kl_input_ids"].tolist()[0][2] == 21
