"""The instance-aware fusion head of the paper (one ``nn.Module``; hyper-parameters in the constructor).

Inputs per instance (shapes for a batch of N, C backbone channels, R = 7):
- ``F``: N x C x R x R float, ROIAlign of the backbone's last feature map;
- ``M``: N x 1 x R x R float in {0, 1}, the instance mask cropped to its box;
- ``D``: N x 1 x R x R float, depth cropped to the box, zero outside the mask;
- ``s``: N x 8 float, depth statistics under the full-resolution mask.

Forward: concat(M, D) -> small CNN -> h in R^64 -> FiLM: X = F * (1 + gamma(h)) + beta(h)   (eq. 2)
-> masked average pooling z = sum(X * M) / (sum(M) + eps)                                 (eq. 3)
-> concat(z, s) -> MLP -> class logits.
Ablations: ``use_depth`` (drops D and s), ``use_mask`` (M := 1), ``use_film`` (plain concat of pooled F and h),
``use_stats`` (drops s).
"""

from __future__ import annotations

import torch
from torch import nn


def masked_average_pool(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """N x C x R x R, N x 1 x R x R -> N x C: mean of ``x`` over the mask (eq. 3)."""
    return (x * mask).sum(dim=(2, 3)) / (mask.sum(dim=(2, 3)) + eps)


class InstanceAwareFusionHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, geometry_dim: int = 64, n_stats: int = 8,
                 mlp_hidden: int = 256, dropout: float = 0.2, use_depth: bool = True, use_mask: bool = True,
                 use_film: bool = True, use_stats: bool = True, eps: float = 1e-6):
        super().__init__()
        self.config = dict(in_channels=in_channels, num_classes=num_classes, geometry_dim=geometry_dim, n_stats=n_stats,
                           mlp_hidden=mlp_hidden, dropout=dropout, use_depth=use_depth, use_mask=use_mask,
                           use_film=use_film, use_stats=use_stats, eps=eps)
        self.use_depth, self.use_mask, self.use_film = use_depth, use_mask, use_film
        self.use_stats = use_stats and use_depth
        self.eps = eps
        self.geometry = nn.Sequential(
            nn.Conv2d(2, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, geometry_dim), nn.ReLU(inplace=True),
        )
        self.film = nn.Linear(geometry_dim, 2 * in_channels)
        nn.init.zeros_(self.film.weight)  # starts as the identity: X = F
        nn.init.zeros_(self.film.bias)
        self.stats_norm = nn.BatchNorm1d(n_stats) if self.use_stats else None
        pooled = in_channels + (0 if use_film else geometry_dim) + (n_stats if self.use_stats else 0)
        self.classifier = nn.Sequential(nn.Linear(pooled, mlp_hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(mlp_hidden, num_classes))

    def modulate(self, f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """FiLM (eq. 2): X = F * (1 + gamma) + beta, gamma/beta: N x C broadcast over the R x R grid."""
        gamma, beta = self.film(h).chunk(2, dim=1)
        return f * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]

    def forward(self, f: torch.Tensor, m: torch.Tensor, d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        mask = m if self.use_mask else torch.ones_like(m)
        depth = d if self.use_depth else torch.zeros_like(d)
        h = self.geometry(torch.cat([mask, depth], dim=1))
        if self.use_film:
            z = masked_average_pool(self.modulate(f, h), mask, self.eps)
        else:
            z = torch.cat([masked_average_pool(f, mask, self.eps), h], dim=1)
        if self.use_stats:
            z = torch.cat([z, self.stats_norm(s)], dim=1)
        return self.classifier(z)
