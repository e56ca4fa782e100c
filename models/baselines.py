"""Reference architectures for complexity comparisons (not trained here).

Minnen et al. 2018 mean-scale hyperprior encoder side (N=128, M=192): the "classic shape" whose
rover cost REMAC's light encoder is compared against, with the same counter and runtime.
"""
import torch
import torch.nn as nn

from remac.models.layers import SimpleGDN


class GDN(SimpleGDN):
    """Full GDN (Balle 2016): x / sqrt(beta + gamma * x^2); cost-equivalent to the original."""

    def forward(self, x):
        norm = torch.nn.functional.conv2d(x * x, self.gamma.abs(), self.beta.abs() + 1e-6)
        return x / torch.sqrt(norm)


class Minnen2018Encoder(nn.Module):
    """g_a + h_a of the mean-scale hyperprior: (1,C,H,W) -> y (1,M,H/16,W/16), z (1,N,H/64,W/64)."""

    def __init__(self, channels=3, n=128, m=192):
        super().__init__()
        self.g_a = nn.Sequential(
            nn.Conv2d(channels, n, 5, 2, 2), GDN(n), nn.Conv2d(n, n, 5, 2, 2), GDN(n),
            nn.Conv2d(n, n, 5, 2, 2), GDN(n), nn.Conv2d(n, m, 5, 2, 2))
        self.h_a = nn.Sequential(
            nn.Conv2d(m, n, 3, 1, 1), nn.LeakyReLU(), nn.Conv2d(n, n, 5, 2, 2), nn.LeakyReLU(),
            nn.Conv2d(n, n, 5, 2, 2))

    def forward(self, x):
        y = self.g_a(x)
        return y, self.h_a(y)
