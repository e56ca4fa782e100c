"""The entropy model's networks: the integer hyper-synthesis h_s (HyperSynthesis: exported to integer
arrays and run by bitstream.intnet on both sides), its spatial and channel contexts, the z prior and
the likelihoods the rate is trained with."""
import math

import numpy as np
import torch
import torch.nn as nn

from remac.bitstream import spatial as bitstream_spatial
from remac.bitstream import spec
from remac.models.intnet import QConv, DepthToSpace, revive_clip, round_half_up



class HyperSynthesis(nn.Module):
    """Integer h_s fused with the entropy reference: (z_hat, r) -> (mu16, scale index).

    z_hat: (B,Z,h,w) integers; r: (B, 2M+1) integers in units 1/4 (gained reference stats plus a
    presence flag, all zero when references are off). Returns mu16 (B,M,4h,4w) and idx (B,M,4h,4w),
    both integer-valued float tensors.
    """

    def __init__(self, m=128, nz=64, hidden=96, ref_hidden=32, slices=None, ctx_hidden=96, spatial=False):
        """slices: channel boundaries (0, ..., M) for channel context (bitstream.latent), None: none;
        spatial: channel 0 in three passes, each predicted from the ones before (bitstream.spatial)."""
        super().__init__()
        a = spec.ACT_SCALE
        self.trunk = nn.ModuleList([
            QConv(nz, hidden, 3, s_in=1.0, s_out=a),
            QConv(hidden, hidden * 4, 3, s_in=a, s_out=a), DepthToSpace(),
            QConv(hidden, hidden * 4, 3, s_in=a, s_out=a), DepthToSpace()])
        self.ref = nn.ModuleList([
            QConv(2 * m + 1, 64, 1, s_in=spec.REF_SCALE, s_out=a),
            QConv(64, ref_hidden, 1, s_in=a, s_out=a)])
        self.fuse = QConv(hidden + ref_hidden, 192, 1, s_in=a, s_out=a)
        s_out = [1.0 / 2 ** spec.MEAN_FRAC_BITS] * m + [1.0] * m
        lo = [-spec.MEAN_CLIP] * m + [0] * m
        hi = [spec.MEAN_CLIP] * m + [spec.SCALE_LEVELS - 1] * m
        self.out = QConv(192, 2 * m, 1, s_in=a, s_out=s_out, lo=lo, hi=hi, revive=True)
        with torch.no_grad():   # start scale indices at 20 (sigma ~ 0.5): small latents early on
            self.out.bias[m:] = 20.0
        self.m = m
        self.slices = tuple(slices) if slices else None
        self.ctx = nn.ModuleList(context_net(192, ctx_hidden, s0, s1 - s0)
                                 for s0, s1 in zip(self.slices[1:-1], self.slices[2:])) if slices else None
        if spatial:     # a flag in the state dict (models.codec.architecture reads it back)
            self.register_buffer("spatial", torch.ones(1))
        self.has_spatial = spatial

    def features(self, z_hat, r):
        """-> (F (B,192,4h,4w) fused features, mu16, idx (B,M,4h,4w)) from the hyperprior alone."""
        h = z_hat
        for layer in self.trunk:
            h = layer(h)
        g = r[:, :, None, None]
        for layer in self.ref:
            g = layer(g)
        h = self.fuse(torch.cat([h, g.expand(-1, -1, h.shape[2], h.shape[3])], dim=1))
        out = self.out(h)
        return h, out[:, :self.m], out[:, self.m:]

    def forward(self, z_hat, r):
        return self.features(z_hat, r)[1:]

    def params(self, z_hat, r, y_g, passes: bool = False):
        """(mu16, idx) (B,M,4h,4w) the coder uses: the hyperprior's, with each context slice k >= 1
        corrected from the rounded latents of the slices before it (bitstream.latent; y_g (B,M,4h,4w)
        the gained latent, whose rounding the ground decodes first), and channel 0's later passes
        from its earlier ones (spatial models; the calibrated scale-index shifts are the coder's).
        passes: also return channel 0's pass (4h,4w) and neighbour class (B,4h,4w) (spatial_means)."""
        feats, mu16, idx = self.features(z_hat, r)
        where = (None, None)
        if self.has_spatial:
            c = bitstream_spatial.CHANNEL
            shift, *where = spatial_means(mu16[:, c], y_g[:, c], self.out.lo[c], self.out.hi[c])
            mu16 = torch.cat([mu16[:, :c], (mu16[:, c] + shift)[:, None], mu16[:, c + 1:]], 1)
        if self.ctx is None:
            return (mu16, idx, *where) if passes else (mu16, idx)
        s, m = self.slices, self.m
        mus, idxs = [mu16[:, :s[1]]], [idx[:, :s[1]]]
        decoded = (16 * round_half_up(y_g[:, :s[1]] - mus[0] / 16) + mus[0]).detach()
        for k, net in enumerate(self.ctx, start=1):
            d = net(torch.cat([feats, torch.clamp(torch.floor(decoded.abs() / 2 ** spec.CTX_SHIFT), 0, spec.ACT_MAX)], 1))
            mk, lo, hi = s[k + 1] - s[k], self.out.lo[None, :, None, None], self.out.hi[None, :, None, None]
            mu_k = revive_clip(mu16[:, s[k]:s[k + 1]] + d[:, :mk], lo[:, s[k]:s[k + 1]], hi[:, s[k]:s[k + 1]])
            idx_k = revive_clip(idx[:, s[k]:s[k + 1]] + d[:, mk:], lo[:, m + s[k]:m + s[k + 1]], hi[:, m + s[k]:m + s[k + 1]])
            mus.append(mu_k)
            idxs.append(idx_k)
            decoded = torch.cat([decoded, (16 * round_half_up(y_g[:, s[k]:s[k + 1]] - mu_k / 16) + mu_k).detach()], 1)
        mu16, idx = torch.cat(mus, 1), torch.cat(idxs, 1)
        return (mu16, idx, *where) if passes else (mu16, idx)

    def export(self) -> dict:
        parts = {"trunk": [l.export() for l in self.trunk], "ref": [l.export() for l in self.ref],
                 "fuse": self.fuse.export(), "out": self.out.export()}
        for k, net in enumerate(self.ctx or (), start=1):
            parts[f"ctx{k}"] = [l.export() for l in net]
        return parts


@torch.no_grad()
def spatial_means(mu16: torch.Tensor, y_g: torch.Tensor, lo, hi):
    """bitstream.spatial's passes for training and calibration: channel 0's hyperprior means mu16
    (B,H,W) and gained latent y_g (B,H,W) -> (shift of the means (B,H,W) float: 0 at pass 0, the
    clipped correction at passes 1 and 2; pass (H,W) long; neighbour class (B,H,W) long, 0 at pass
    0), each pass's symbols rounded as the rover rounds without RDO. The coder's own integer code
    (bitstream.spatial.run_passes) computes them; the shift depends on rounded latents only, so it
    carries no gradient, while the hyperprior's mean under it still learns."""
    hyper = mu16.round().long().cpu().numpy()
    y = y_g.double().cpu().numpy()
    s = np.floor(y - hyper / 16 + 0.5).astype(np.int64)

    def round_pass(p, at, mu, cls):
        s[at] = np.floor(y - mu / 16 + 0.5).astype(np.int64)[at]
    mu, cls = bitstream_spatial.run_passes(hyper, s, int(lo), int(hi), round_pass)
    which = bitstream_spatial.pass_of(*hyper.shape[-2:])
    return tuple(torch.from_numpy(a).to(mu16.device) for a in ((mu - hyper).astype(np.float32), which, cls))


def context_net(features: int, hidden: int, decoded: int, channels: int) -> nn.Sequential:
    """Slice corrections: (F, |decoded latents|) -> (mu16, idx) corrections of `channels` channels,
    one 3x3 integer conv and one 1x1; the last layer starts near zero (the hyperprior as it is)."""
    a = spec.ACT_SCALE
    limit = spec.SCALE_LEVELS - 1
    out = QConv(hidden, 2 * channels, 1, s_in=a, s_out=[1.0 / 2 ** spec.MEAN_FRAC_BITS] * channels + [1.0] * channels,
                lo=[-spec.MEAN_CLIP] * channels + [-limit] * channels,
                hi=[spec.MEAN_CLIP] * channels + [limit] * channels, revive=True)
    with torch.no_grad():
        out.weight.mul_(0.01)
    return nn.Sequential(QConv(features + decoded, hidden, 3, s_in=a, s_out=a), out)


class LogisticMixturePrior(nn.Module):
    """Factorized per-channel prior for z: a mixture of K logistics per channel."""

    def __init__(self, nz=64, k=3):
        super().__init__()
        self.loc = nn.Parameter(torch.linspace(-1, 1, k).repeat(nz, 1))
        self.log_scale = nn.Parameter(torch.zeros(nz, k))
        self.logits = nn.Parameter(torch.zeros(nz, k))

    def cdf(self, x):
        """x: (B,Z,H,W) -> cdf, same shape."""
        loc, s, w = (t[None, :, None, None, :] for t in (self.loc, self.log_scale.exp(), self.logits.softmax(-1)))
        return (torch.sigmoid((x[..., None] - loc) / s) * w).sum(-1)

    def likelihood(self, x):
        return likelihood_floor(self.cdf(x + 0.5) - self.cdf(x - 0.5))


def likelihood_floor(p):
    """max(p, 1e-9) whose gradient still flows below the floor when it would raise p.

    A plain clamp has zero gradient there, so a latent far outside its predicted scale (which the
    coder pays ~16 bits for, as an escape or a count-1 symbol) taught the model nothing."""
    return revive_clip(p, p.new_tensor(1e-9), p.new_tensor(float("inf")))


def gaussian_likelihood(x, mu, sigma):
    """P(round(x - mu) = x - mu) under N(0, sigma) for integer-spaced bins around x."""
    d = (x - mu).abs()          # symmetric: both terms in the lower tail, where erfc is accurate
    upper = 0.5 * torch.erfc((d - 0.5) / (sigma * math.sqrt(2)))
    lower = 0.5 * torch.erfc((d + 0.5) / (sigma * math.sqrt(2)))
    return likelihood_floor(upper - lower)
