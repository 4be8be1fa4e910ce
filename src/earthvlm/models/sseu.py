"""SSE-U: a heteroscedastic GSD head on pooled vision features (ScaleEarth Eq. 2-3).

    z = GELU(W LN(f)),  mu = W_mu z,  log sigma^2 = clamp(W_sigma z, -10, 4)

trained with the Gaussian negative log-likelihood on exact-GSD samples only. Saved with
an adapter as extra tensors named ``sseu.<parameter>``.
"""

from __future__ import annotations

import torch
from torch import nn

LOGVAR_MIN, LOGVAR_MAX = -10.0, 4.0


class SSEUHead(nn.Module):
    """Predicts (mu, log sigma^2) of log10 GSD from a pooled vision feature (N, D).

    Args:
        in_dim: Feature size D.
        hidden: Trunk width (the paper does not state it; default D).
        init_mu: Initial bias of mu, e.g. the mean log10 GSD of the training data.
    """

    def __init__(self, in_dim: int, hidden: int | None = None, init_mu: float = 0.0) -> None:
        super().__init__()
        hidden = hidden or in_dim
        self.norm = nn.LayerNorm(in_dim)
        self.trunk = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.mu = nn.Linear(hidden, 1)
        self.logvar = nn.Linear(hidden, 1)
        with torch.no_grad():
            self.mu.bias.fill_(init_mu)
            self.logvar.bias.zero_()  # sigma = 1 at start: unsure until trained

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.act(self.trunk(self.norm(features.float())))
        mu = self.mu(z).squeeze(-1)
        logvar = self.logvar(z).squeeze(-1).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return mu, logvar


def gaussian_nll(
    mu: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Eq. 3: mean over ``mask`` of 0.5 (s - mu)^2 / exp(logvar) + 0.5 logvar.

    Returns 0 (with a graph) when no sample is exact, so the joint loss stays defined.
    """
    m = mask.bool()
    if not m.any():
        return (mu * 0.0).sum()
    diff = target[m].float() - mu[m]
    return (0.5 * diff.pow(2) * torch.exp(-logvar[m]) + 0.5 * logvar[m]).mean()
