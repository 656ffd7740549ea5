"""The preference losses, as pure functions of per-sequence log-probabilities.

No model and no Trainer here: each function takes what the forward passes produced
(log-probabilities of the answer tokens summed per sequence, their token counts, the
reference's log-probabilities) and returns the per-example losses with the implied rewards
that TRL logs (rewards/chosen, rewards/rejected). The formulas follow TRL 1.16
(DPOTrainer, the experimental CPOTrainer for SimPO and ORPOTrainer, KTOTrainer); the tests
call TRL's own code on the same tensors and require |difference| < 1e-5
(tests/test_preference_loss.py).

What goes into them differs from TRL in two places, as the papers have it: the answer tokens are
those SFT trains (the answer and its end-of-turn token; TRL also counts the template's newline
after it), and ORPO's NLL term is over the chosen answer only (the paper's L_SFT; TRL 1.16
includes the prompt). So the loss values of a run are not TRL's to the digit.

Notation: logps = log pi(answer | prompt), summed over the answer's tokens (the positions
whose label is not IGNORE_INDEX); "ratio" = policy logps - reference logps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")


@dataclass
class PairLosses:
    """Per-example losses (the batch loss is their mean) and detached implied rewards."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.losses.mean()


def dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *, beta: float,
             loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_tokens=None, rejected_tokens=None) -> PairLosses:
    """DPO and its variants. margin = (chosen ratio - rejected ratio).

    sigmoid: -log sigmoid(beta margin) (DPO); hinge: relu(1 - beta margin) (SLiC);
    ipo: (per-token margin - 1/(2 beta))^2, the ratios divided by each answer's token count
    (IPO; TRL's length normalization); robust: the sigmoid loss unbiased for a label_smoothing
    share of flipped pairs (rDPO).
    """
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    margin = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * margin)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * margin)
    elif loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss needs the answers' token counts")
        per_token = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (per_token - 1 / (2 * beta)) ** 2
    elif loss_type == "robust":
        eps = label_smoothing
        losses = (-(1 - eps) * F.logsigmoid(beta * margin) + eps * F.logsigmoid(-beta * margin)) / (1 - 2 * eps)
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r} (known: {', '.join(DPO_LOSS_TYPES)})")
    return PairLosses(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def chosen_nll(chosen_logps, chosen_tokens) -> torch.Tensor:
    """The answer loss on the chosen answers: mean negative log-likelihood per token over all chosen
    tokens of the batch (ORPO's answer term; RPO's, TRL's DPO loss_type "sft")."""
    return -chosen_logps.sum() / chosen_tokens.sum().clamp(min=1)


def rpo_loss(pairs: PairLosses, chosen_logps, chosen_tokens, *, alpha: float) -> torch.Tensor:
    """RPO (Pang et al. 2024): the batch's DPO loss + alpha x the answer loss on chosen, as TRL 1.16
    computes loss_type ["sigmoid", "sft"] with loss_weights [1, alpha] (older TRL: rpo_alpha)."""
    return pairs.loss + alpha * chosen_nll(chosen_logps, chosen_tokens)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation near 0 or underflow far from it."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(chosen_avg_logps, rejected_avg_logps, chosen_nll, *, lam: float) -> tuple[PairLosses, torch.Tensor]:
    """ORPO: chosen_nll + lam * -log sigmoid(log odds(chosen) - log odds(rejected)), odds p/(1-p)
    of the per-token average probability. Returns (per-pair odds-ratio losses, already weighted by
    lam, with rewards lam x average logps as TRL logs them; the full batch loss)."""
    chosen_avg_logps, rejected_avg_logps = chosen_avg_logps.float(), rejected_avg_logps.float()
    log_odds = (chosen_avg_logps - rejected_avg_logps) - (log1mexp(chosen_avg_logps) - log1mexp(rejected_avg_logps))
    losses = -lam * F.logsigmoid(log_odds)
    pairs = PairLosses(losses, lam * chosen_avg_logps.detach(), lam * rejected_avg_logps.detach())
    return pairs, chosen_nll + losses.mean()


def simpo_loss(chosen_avg_logps, rejected_avg_logps, *, beta: float, gamma: float,
               label_smoothing: float = 0.0) -> PairLosses:
    """SimPO: -log sigmoid(beta (avg chosen logps - avg rejected logps) - gamma), no reference;
    label smoothing as in TRL's CPO trainer. Rewards: beta x average logps."""
    logits = (chosen_avg_logps - rejected_avg_logps) - gamma / beta
    losses = (-F.logsigmoid(beta * logits) * (1 - label_smoothing)
              - F.logsigmoid(-beta * logits) * label_smoothing)
    return PairLosses(losses, beta * chosen_avg_logps.detach(), beta * rejected_avg_logps.detach())


def kto_kl(kl_logps, ref_kl_logps) -> torch.Tensor:
    """KTO's reference point: the batch-mean log ratio on mismatched (prompt, answer) pairs,
    detached and clamped at 0 (single process; under several processes TRL averages over all)."""
    return (kl_logps - ref_kl_logps).mean().detach().clamp(min=0)


def kto_loss(logps, ref_logps, desirable, kl, *, beta: float, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> PairLosses:
    """KTO: good answers lose 1 - sigmoid(beta (ratio - kl)), bad ones 1 - sigmoid(beta (kl - ratio)),
    weighted. `desirable`: bool per example. losses: the good ones' then the bad ones' (batch loss =
    their mean); chosen/rejected rewards: beta x ratio of the good / bad ones (either may be empty)."""
    ratio = logps - ref_logps
    good, bad = ratio[desirable], ratio[~desirable]
    losses = torch.cat((desirable_weight * (1 - torch.sigmoid(beta * (good - kl))),
                        undesirable_weight * (1 - torch.sigmoid(beta * (kl - bad)))))
    return PairLosses(losses, beta * good.detach(), beta * bad.detach())


def reward_metrics(pairs: PairLosses, chosen_logps, rejected_logps, paired: bool = True) -> dict[str, float]:
    """TRL's logged names for one micro-batch: rewards/chosen, rewards/rejected, rewards/margins,
    rewards/accuracies (paired objectives: share of pairs whose chosen reward is higher), logps/chosen,
    logps/rejected. Unpaired (KTO) batches may lack one side; those keys are then left out."""
    metrics: dict[str, float] = {}
    if pairs.chosen_rewards.numel():
        metrics["rewards/chosen"] = pairs.chosen_rewards.mean().item()
        metrics["logps/chosen"] = chosen_logps.detach().mean().item()
    if pairs.rejected_rewards.numel():
        metrics["rewards/rejected"] = pairs.rejected_rewards.mean().item()
        metrics["logps/rejected"] = rejected_logps.detach().mean().item()
    if paired:
        metrics["rewards/margins"] = (pairs.chosen_rewards - pairs.rejected_rewards).mean().item()
        metrics["rewards/accuracies"] = (pairs.chosen_rewards > pairs.rejected_rewards).float().mean().item()
    elif "rewards/chosen" in metrics and "rewards/rejected" in metrics:
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    return metrics
