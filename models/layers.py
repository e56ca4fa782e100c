"""Small float building blocks shared by the rover graph and the ref-decoder."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SimpleGDN(nn.Module):
    """Simplified GDN (Johnston et al. 2019): y_i = x_i / (beta_i + sum_j gamma_ij |x_j|).

    Shape-preserving on (B, C, H, W); exports to ONNX as Abs, Conv(1x1), Add, Div.
    """

    def __init__(self, ch):
        super().__init__()
        self.beta = nn.Parameter(torch.ones(ch))
        self.gamma = nn.Parameter(0.1 * torch.eye(ch).view(ch, ch, 1, 1))

    def forward(self, x):
        norm = F.conv2d(x.abs(), self.gamma.abs(), self.beta.abs() + 1e-6)
        return x / norm


def conv(cin, cout, k=3, stride=1, dilation=1):
    return nn.Conv2d(cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation)


class ResBlock(nn.Module):
    """x + conv(act(conv(act(x)))), optionally dilated to widen the receptive field.

    hidden: width of the inner layer (default ch; 2*ch for the decoder's "wide" blocks)."""

    def __init__(self, ch, dilation=1, identity_init=False, hidden=None):
        super().__init__()
        hidden = hidden or ch
        self.c1 = conv(ch, hidden, 3, dilation=dilation)
        self.c2 = conv(hidden, ch, 3, dilation=dilation)
        if identity_init:
            nn.init.zeros_(self.c2.weight)
            nn.init.zeros_(self.c2.bias)

    def forward(self, x):
        return x + self.c2(F.leaky_relu(self.c1(F.leaky_relu(x, 0.1)), 0.1))


class Upsample2(nn.Module):
    """3x3 conv to 4*cout channels, then pixel shuffle: (B, cin, H, W) -> (B, cout, 2H, 2W)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.c = conv(cin, cout * 4, 3)

    def forward(self, x):
        return F.pixel_shuffle(self.c(x), 2)


class StatModulation(nn.Module):
    """Scale/shift decoder features by the channel statistics of reference features.

    Position-free (the reference is not aligned with the image): per-channel mean and std of
    the reference features -> (gamma, beta); zero-initialised, so it starts as the identity.
    """

    def __init__(self, ch, ref_ch):
        super().__init__()
        self.fc = nn.Linear(2 * ref_ch, 2 * ch)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x, ref_feat):
        stats = torch.cat([ref_feat.mean(dim=(2, 3)), ref_feat.std(dim=(2, 3))], dim=1)
        gamma, beta = self.fc(stats).chunk(2, dim=1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class CrossAttention(nn.Module):
    """Every decoder position attends to every reference position (global, unaligned).

    x: (B, C, H, W) queries; ref: (B, C, h, w) keys/values. Residual; output projection is
    zero-initialised so training starts from the reference-free decoder.
    """

    def __init__(self, ch, heads=4):
        super().__init__()
        self.heads = heads
        self.q = nn.Conv2d(ch, ch, 1)
        self.kv = nn.Conv2d(ch, 2 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, ref):
        b, c, h, w = x.shape
        split = lambda t: t.flatten(2).view(b, self.heads, c // self.heads, -1).transpose(2, 3)
        q = split(self.q(x))
        k, v = (split(t) for t in self.kv(ref).chunk(2, dim=1))
        att = F.scaled_dot_product_attention(q, k, v)          # (B, heads, HW, C/heads)
        att = att.transpose(2, 3).reshape(b, c, h, w)
        return x + self.out(att)
