"""Hierarchical cross-modal attention (HCA), EarthMind sec. 3.2, Eq. 2-7.

Between the vision projector and the language model, a pair of optical tokens ``(P, D)``
and SAR tokens ``(N, D)`` becomes ``N`` fused tokens:

1. The optical tokens are adaptively pooled onto the SAR grid: X-hat_o ``(N, D)``.
2. Cross-sensor attention (Eq. 2) in both directions; alpha_o of an optical token is the
   attention it receives from the SAR tokens, alpha_s the converse (Eq. 3).
3. Text-guided relevance (Eq. 4-5): beta of each visual token to the prompt.
4. gamma = lambda * alpha + (1 - lambda) * beta per sensor (Eq. 6), lambda learnable;
   per-token softmax over the two sensors gives [w_o, w_s], and the fused token is
   w_o * X-hat_o + w_s * X_s (Eq. 7). The sequence does not grow.

HCA has one parameter of its own, lambda; everything else is attention over the
projected tokens, so gradients also reach the projector through the fusion weights.

Where this departs from the paper, and why:

* **beta normalised over visual tokens (Eq. 4-5).** As written, A^{o2t} is a softmax over
  the L text tokens and beta_i its mean over those L tokens, which is 1/L for every
  token whatever the embeddings: the text stage would carry no information. Here the
  softmax runs over the visual tokens (how much each prompt token attends to visual
  token i), averaged over the prompt: the same construction as alpha in Eq. 3.
* **Scores scaled by the token count** (``score_scale="tokens"``, default). alpha and beta
  each sum to 1 over N tokens, so with N in the hundreds every gamma is ~1/N and the
  two-way softmax of Eq. 7 returns ~0.5 / 0.5. Multiplying by N (an average token scores
  1) keeps the weights responsive; ``score_scale="none"`` is the literal form.
* **lambda through a sigmoid.** Eq. 6 says only "learnable"; ``lambda = sigmoid(l)`` keeps
  it in [0, 1] under any optimiser step.
* **No prompt, no text stage.** A group given without text embeddings uses gamma = alpha
  (lambda taken as 1), so single-turn captioning without a prompt still fuses.
* ``method="fixed"``: lambda is a constant (a buffer). The public EarthMind release has
  no learnable lambda (nor adaptive pooling: it needs equal token counts, which
  ``pooling="none"`` reproduces); it rescales each token by a sigmoid of a learned
  bilinear score and concatenates both sensors, which is not a convex fusion.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from earthvlm.fusion.base import SensorFusion, TokenWeights
from earthvlm.fusion.config import FusionConfig


def _received(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over each row's keys, then the mean attention each key receives: ``(K,)``.

    ``scores`` is ``(Q, K)``. Eq. 3: ``alpha_i = 1/Q sum_j A_{j i}``.
    """
    return scores.softmax(dim=-1).mean(dim=0)


class HCAFusion(SensorFusion):
    """Hierarchical cross-modal attention (``hca``) and its fixed-lambda variant (``fixed``).

    Attributes:
        fusion_lambda_logit: ``logit(lambda)``; a parameter for ``hca``, a buffer for
            ``fixed``.
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        logit = torch.tensor(math.log(config.lambda_init / (1.0 - config.lambda_init)))
        if config.learns_lambda:
            self.fusion_lambda_logit = torch.nn.Parameter(logit)
        else:
            self.register_buffer("fusion_lambda_logit", logit)

    @property
    def lam(self) -> torch.Tensor:
        """lambda of Eq. 6, in [0, 1]."""
        return torch.sigmoid(self.fusion_lambda_logit)

    def token_weights(
        self, xo: torch.Tensor, sar: torch.Tensor, text: torch.Tensor | None
    ) -> TokenWeights:
        n, d = sar.shape
        scale = 1.0 / math.sqrt(d)
        # attention in float32 whatever the tokens' dtype (bf16 softmax over N is coarse)
        o, s = xo.float(), sar.float()
        o2s = (o @ s.t()) * scale  # (N, N): optical i -> SAR j; s2o is its transpose (Eq. 2)
        alpha_o = _received(o2s.t())  # attention optical token i receives from SAR (Eq. 3)
        alpha_s = _received(o2s)
        alpha = torch.stack([alpha_o, alpha_s], dim=-1)
        if self.config.score_scale == "tokens":
            alpha = alpha * n
        beta = None
        gamma = alpha
        if text is not None and text.shape[0] > 0:
            t = text.float()
            # departure (see module docstring): softmax over visual tokens, mean over text
            beta_o = _received((t @ o.t()) * scale)
            beta_s = _received((t @ s.t()) * scale)
            beta = torch.stack([beta_o, beta_s], dim=-1)
            if self.config.score_scale == "tokens":
                beta = beta * n
            lam = self.lam.float()
            gamma = lam * alpha + (1.0 - lam) * beta  # Eq. 6
        weights = F.softmax(gamma / self.config.temperature, dim=-1)  # Eq. 7
        return weights, alpha, beta

    def extra_repr(self) -> str:
        kind = "learned" if self.config.learns_lambda else "fixed"
        lam = float(self.lam.detach())
        return f"dim={self.config.dim}, lambda={lam:.3f} ({kind}), pooling={self.config.pooling}"
