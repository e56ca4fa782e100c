"""The REMAC networks (one instance per modality: 1-channel grey or 3-channel colour).

    x (B,C,H,W) in [0,1]
      |  g_a: 4 x [conv5x5/2 + GDN]           (rover, ONNX, float)
      v
      y (B,M,H/16,W/16) --*gain[q]--> y_g --h_a--> z (B,Z,H/64,W/64)
                                      |             | round, clip +-255
                                      |             v
                                      |           z_hat --------------------.
                                      |                                      v
      ref latent stats (2M ints) --gain--> r ----------------> h_s (integer network)
                                      |                                      |
                                      |      mu16 (units 1/16), scale index  |
                                      v                                      v
                      s = round(y_g - mu) -- range coded with table[scale index]
                                      |
      y_hat_g = s + mu  --* inv_gain[q]--> y_hat --> RefDecoder(y_hat, x_ref) --> x_hat

Only `RoverEncoder` runs on the rover (exported to ONNX); `HyperSynthesis` is exported to integer
arrays and run by `bitstream.intnet` on both sides; `RefDecoder` runs on the ground.
"""
import hashlib
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bitstream import spatial as bitstream_spatial
from bitstream import spec
from models.intnet import QConv, DepthToSpace, revive_clip, round_half_up
from models.layers import SimpleGDN, ResBlock, Upsample2, StatModulation, CrossAttention, conv


def hyper_analysis(m: int, nz: int) -> nn.Sequential:
    """h_a: gained latent (B,M,h,w) -> hyper-latent z (B,Z,h/4,w/4), before rounding."""
    return nn.Sequential(
        nn.Conv2d(m, 96, 3, 1, 1), nn.LeakyReLU(0.1),
        nn.Conv2d(96, 96, 5, 2, 2), nn.LeakyReLU(0.1),
        nn.Conv2d(96, nz, 5, 2, 2))


def texture_stats(h1: torch.Tensor) -> torch.Tensor:
    """(B,N,H,W) first-layer features -> (B, 2N) channel means and stds: the shallow descriptor."""
    return torch.cat([h1.mean(dim=(2, 3)), h1.std(dim=(2, 3))], dim=1)


class RoverGraph(nn.Module):
    """What the rover runs, whatever the analysis: forward(x, gain) -> (y, z = h_a(y * gain), shallow).
    Subclasses define analysis(x) -> (y, shallow) and h_a."""

    def forward(self, x, gain):
        y, shallow = self.analysis(x)
        return y, self.h_a(y * gain), shallow


class RoverEncoder(RoverGraph):
    """g_a + h_a: the rover's whole float graph.

    forward(x (1,C,H,W), gain (1,M,1,1)) -> y (1,M,H/16,W/16) ungained,
    z (1,Z,H/64,W/64) = h_a(y * gain), shallow (1, 2N) = mean/std of the first GDN output
    (a texture descriptor recycled for decoder-reference selection).
    """

    def __init__(self, channels, n=64, m=128, nz=64):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, n, 5, 2, 2)
        self.gdn1 = SimpleGDN(n)
        self.rest = nn.Sequential(
            nn.Conv2d(n, n, 5, 2, 2), SimpleGDN(n),
            nn.Conv2d(n, n, 5, 2, 2), SimpleGDN(n),
            nn.Conv2d(n, m, 5, 2, 2))
        self.h_a = hyper_analysis(m, nz)

    def analysis(self, x):
        h1 = self.gdn1(self.conv1(x))
        shallow = texture_stats(h1)
        return self.rest(h1), shallow



class KLTEncoder(RoverGraph):
    """g_a + h_a of the "klt" architecture: a linear block transform plus a learned correction.

        x (B,C,H,W) - 1/2 --conv16x16/16 (KLT of 16x16 training patches)--> y_lin --.
          |                                                                         (+)--> y (B,M,H/16,W/16)
          '--conv5x5/2-GDN--conv5x5/2-GDN--conv5x5/2-GDN--conv5x5/2 (zero init)-----'

    At initialisation y is the orthonormal KLT of each 16x16 block (M = 256 C keeps every
    coefficient: no reconstruction ceiling, unlike the GDN encoder whose training saturated at
    0.4-0.7 bpp); the nonlinear branch can only add to it. Same interface as RoverEncoder:
    forward(x, gain) -> (y, z, shallow), shallow (1, 2N) = mean/std of the first GDN output.
    Rover cost at N=64, M=256 (grey): ~8.6 kMAC/px (evaluation.complexity measures it).

    lap > 0: a lapped block transform: each coefficient reads its 16x16 block plus `lap` pixels
    on every side (kernel 16 + 2 lap, stride 16, zero padding of x - 1/2). with_lap embeds a
    16x16 basis in the centre with zeros around it, so a trained model gains the overlap
    without changing its output; the linear part's cost grows from 0.25 to (1 + lap/8)^2 x 0.25
    kMAC/px per input channel.

    width: channels of the correction branch at 1/4 and 1/8 (default n); the first layer (n/2
    channels, the descriptor's source) does not change with it. with_width widens a trained
    branch without changing its output.
    """

    def __init__(self, channels, n=64, m=256, nz=64, lap=0, width=None):
        super().__init__()
        self.lap = lap
        self.width = w = width or n
        self.proj = nn.Conv2d(channels, m, 16 + 2 * lap, 16, padding=lap, bias=False)
        self.conv1 = nn.Conv2d(channels, n // 2, 5, 2, 2)
        self.gdn1 = SimpleGDN(n // 2)
        self.rest = nn.Sequential(
            nn.Conv2d(n // 2, w, 5, 2, 2), SimpleGDN(w),
            nn.Conv2d(w, w, 5, 2, 2), SimpleGDN(w),
            nn.Conv2d(w, m, 5, 2, 2))
        nn.init.zeros_(self.rest[-1].weight)
        nn.init.zeros_(self.rest[-1].bias)
        self.h_a = hyper_analysis(m, nz)

    @torch.no_grad()
    def init_basis(self, basis: torch.Tensor):
        """basis: (M, C*256) orthonormal rows (models.training.data.klt_basis), strongest first;
        a lapped encoder gets it in the centre of its kernels, zeros around."""
        self.proj.weight.copy_(lapped_kernel(basis.reshape(*self.proj.weight.shape[:2], 16, 16), self.lap))

    def analysis(self, x):
        h1 = self.gdn1(self.conv1(x))
        shallow = texture_stats(h1)
        return self.proj(x - 0.5) + self.rest(h1), shallow



def lapped_kernel(weight: torch.Tensor, lap: int) -> torch.Tensor:
    """(M, C, k, k) block-transform kernel -> (M, C, 16 + 2 lap, 16 + 2 lap): the same transform
    with each block seen through a wider window (the old kernel centred, zeros around). Only
    widens: a kernel as wide or wider is returned as it is."""
    pad = (16 + 2 * lap - weight.shape[-1]) // 2
    return F.pad(weight, (pad,) * 4) if pad > 0 else weight


def kernel_lap(weight: torch.Tensor) -> int:
    """The overlap in pixels of a block-transform kernel (M, C, 16 + 2 lap, 16 + 2 lap): lapped_kernel's lap."""
    return (int(weight.shape[-1]) - 16) // 2


def with_lap(state: dict, lap: int, decoder_lap: int = 0) -> dict:
    """A klt checkpoint's tensors with the encoder's block transform widened to `lap` and the
    decoder's linear synthesis to `decoder_lap` (lapped_kernel): the same y from the same x and the
    same x_hat from the same y (the paddings keep every block where it was)."""
    out = {**state, "encoder.proj.weight": lapped_kernel(state["encoder.proj.weight"], lap)}
    if "decoder.synth_lin.weight" in state:
        out["decoder.synth_lin.weight"] = lapped_kernel(state["decoder.synth_lin.weight"], decoder_lap)
    return out


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
        if spatial:     # a flag in the state dict (models.remac.architecture reads it back)
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


class RefDecoder(nn.Module):
    """Ground-side synthesis: y_hat (B,M,h,w) + decoder reference x_ref (B,C,H',W') -> x_hat (B,C,16h,16w).

    Multi-scale: a reference pyramid (1/4, 1/8, 1/16) conditions the decoder at three scales:
    global cross-attention at 1/16, channel-statistics modulation at 1/8 and 1/4. Dilated
    residual blocks widen the receptive field. x_ref may be any size >= 16 px per side.
    """

    def __init__(self, channels, m=128, width=(128, 96, 64, 32), extra=(0, 0, 0, 0), wide=(0, 0, 0, 0),
                 skip=False, lap=0):
        """skip: add a linear block synthesis (transposed conv 16x16/16, initialised as the inverse of
        KLTEncoder's basis) to the network's output, whose last layer then starts at zero: the
        decoder starts as the exact inverse of the linear encoder and learns a correction (deblocking,
        texture, the reference's detail) on top, so its width no longer caps quality.
        extra: additional residual blocks at scales 1/16, 1/8, 1/4, 1/2 (the "heavy" decoder of the
        asymmetric schedule); wide: further blocks after them whose inner layer is twice as wide
        (session 3: the high-resolution scales are only 32-64 channels wide, and the trained codec's
        PSNR saturated at high rate even with unquantized latents). All start as the identity, so a
        trained decoder loads into a heavier one unchanged and fine-tuning can only add to it.
        lap: the linear synthesis's overlap (kernel 16 + 2 lap, stride 16: each latent pixel's
        basis images reach `lap` pixels into the neighbouring blocks), the synthesis half of
        KLTEncoder's lapped transform."""
        super().__init__()
        w16, w8, w4, w2 = width
        act = lambda: nn.LeakyReLU(0.1)
        self.ref2 = nn.Sequential(conv(channels, w2, 3, 2), act())
        self.ref4 = nn.Sequential(conv(w2, w4, 3, 2), act())
        self.ref8 = nn.Sequential(conv(w4, w8, 3, 2), act())
        self.ref16 = nn.Sequential(conv(w8, w16, 3, 2), act())
        self.head = conv(m, w16, 3)
        self.s16a = nn.Sequential(ResBlock(w16), ResBlock(w16, 2))
        self.att16 = CrossAttention(w16)
        self.s16b = ResBlock(w16, 4)
        self.up8 = Upsample2(w16, w8)
        self.mod8 = StatModulation(w8, w8)
        self.s8 = nn.Sequential(ResBlock(w8), ResBlock(w8, 2))
        self.up4 = Upsample2(w8, w4)
        self.mod4 = StatModulation(w4, w4)
        self.s4 = nn.Sequential(ResBlock(w4), ResBlock(w4, 2))
        self.up2 = Upsample2(w4, w2)
        self.s2 = ResBlock(w2)
        self.up1 = Upsample2(w2, channels)
        dilations = (1, 2, 4, 8)
        grow = lambda ch, n, k=1: nn.Sequential(*[ResBlock(ch, dilations[i % 4], identity_init=True, hidden=k * ch)
                                                  for i in range(n)])
        self.x16, self.x8, self.x4, self.x2 = (grow(ch, n) for ch, n in zip(width, extra))
        self.w16, self.w8, self.w4, self.w2 = (grow(ch, n, 2) for ch, n in zip(width, wide))
        self.extra, self.wide = tuple(extra), tuple(wide)
        if lap % 8:         # previews average the basis images over up to 8 x 8 pixels (models.ground)
            raise ValueError(f"the linear synthesis's overlap must be a multiple of 8 pixels, not {lap}")
        self.lap = lap
        self.synth_lin = nn.ConvTranspose2d(m, channels, 16 + 2 * lap, 16, padding=lap) if skip else None
        if skip:
            nn.init.zeros_(self.up1.c.weight)
            nn.init.zeros_(self.up1.c.bias)
            nn.init.constant_(self.synth_lin.bias, 0.5)

    @torch.no_grad()
    def init_basis(self, basis: torch.Tensor):
        """basis: (M, C*256) orthonormal rows, as KLTEncoder.init_basis: the linear path inverts it."""
        self.synth_lin.weight.copy_(lapped_kernel(basis.reshape(*self.synth_lin.weight.shape[:2], 16, 16), self.lap))

    def reference_features(self, x_ref):
        """x_ref (B,C,H',W') -> pyramid (r4, r8, r16) used by synthesize()."""
        r4 = self.ref4(self.ref2(x_ref))
        r8 = self.ref8(r4)
        return r4, r8, self.ref16(r8)

    def forward(self, y_hat, x_ref):
        return self.synthesize(y_hat, self.reference_features(x_ref))

    def synthesize(self, y_hat, ref_feats):
        r4, r8, r16 = ref_feats
        h = self.s16a(self.head(y_hat))
        h = self.w16(self.x16(self.s16b(self.att16(h, r16))))
        h = self.w8(self.x8(self.s8(self.mod8(self.up8(h), r8))))
        h = self.w4(self.x4(self.s4(self.mod4(self.up4(h), r4))))
        h = self.w2(self.x2(self.s2(self.up2(h))))
        out = self.up1(h)
        if self.synth_lin is None:
            return out
        with torch.autocast(y_hat.device.type, enabled=False):     # the linear path stays fp32
            return self.synth_lin(y_hat.float()) + out.float()


def decoder_layout(state, prefix="decoder.") -> dict:
    """A state dict's decoder layout, as REMAC keyword arguments: {"decoder_extra": (n16, n8, n4, n2)
    extra blocks, "decoder_wide": (...) wide blocks, "decoder_width": (w16, w8, w4, w2),
    "decoder_skip": bool (linear synthesis path), "decoder_lap": its overlap in pixels}."""
    keys = list(state)
    count = lambda block: 1 + max((int(k[len(prefix):].split(".")[1]) for k in keys
                                   if k.startswith(f"{prefix}{block}.")), default=-1)
    return {"decoder_extra": tuple(count(b) for b in ("x16", "x8", "x4", "x2")),
            "decoder_wide": tuple(count(b) for b in ("w16", "w8", "w4", "w2")),
            "decoder_width": tuple(int(state[f"{prefix}{r}.0.weight"].shape[0]) for r in ("ref16", "ref8", "ref4", "ref2")),
            "decoder_skip": f"{prefix}synth_lin.weight" in state,
            "decoder_lap": kernel_lap(state[f"{prefix}synth_lin.weight"]) if f"{prefix}synth_lin.weight" in state else 0}


def architecture(state) -> dict:
    """Every REMAC keyword argument a checkpoint's tensors imply (encoder kind, M, decoder layout,
    channel-context slices: each ctx net reads 192 features plus the channels before its slice)."""
    m = int(state["log_gain"].shape[1])
    firsts = sorted((int(k.split(".")[2]), v.shape[1] - 192) for k, v in state.items()
                    if k.startswith("hyper.ctx.") and k.endswith(".0.weight"))
    slices = (0, *(d for _, d in firsts), m) if firsts else None
    klt = "encoder.proj.weight" in state
    levels = int(state["log_gain"].shape[0])
    lap = {"lap": kernel_lap(state["encoder.proj.weight"]),
           "encoder_width": int(state["encoder.rest.0.weight"].shape[0])} if klt else {}
    return {"arch": "klt" if klt else "gdn", "m": m, "slices": slices, "spatial": "hyper.spatial" in state, **lap,
            "lambdas": (KLT_LAMBDAS if klt else LAMBDAS)[:levels], **decoder_layout(state)}


def extend_levels(state: dict, levels: int) -> dict:
    """A checkpoint with L quality levels -> one with `levels` >= L: the new rows of `log_gain` and
    `log_inv_gain` (L, M) continue the last two rows' log-linear trend, so the old top quality's
    gains are unchanged and each new level steps on as the last one did (Cui et al.'s gain units
    extrapolate well: session 8, one level past the top decoded val/gray at 1.55 bpp / 45.5 dB,
    PSNR still rising). The state is returned unchanged when it has `levels` rows already."""
    out = dict(state)
    for key in ("log_gain", "log_inv_gain"):
        rows = state[key]
        if rows.shape[0] > levels:
            raise ValueError(f"{key} has {rows.shape[0]} levels, more than {levels}")
        step = rows[-1] - rows[-2]
        extra = [rows[-1] + k * step for k in range(1, levels - rows.shape[0] + 1)]
        out[key] = torch.cat([rows, *(e[None] for e in extra)]) if extra else rows
    return out


def with_spatial(state: dict) -> dict:
    """A checkpoint's tensors with the spatial-context flag (HyperSynthesis(spatial=True)): channel
    0 coded in passes from then on; nothing else changes (the calibration chooses the shifts)."""
    return {**state, "hyper.spatial": torch.ones(1)}


def with_width(state: dict, width: int, seed: int = 0) -> dict:
    """A klt checkpoint's tensors with the encoder's correction branch (KLTEncoder.rest) widened to
    `width` channels at 1/4 and 1/8, y unchanged: the new channels of rest.0 and rest.2 start as a
    fresh layer would (PyTorch's default init, seeded), and every weight that reads a new channel
    (rest.2, rest.4) starts at zero, so gradients reach them and nothing moves before they do. Each
    GDN's new channels are normalised among themselves (gamma 0.1 I); the old channels' terms for
    a new one start at 1e-6 (not 0: |gamma| has no gradient at 0), a relative change of ~1e-6.
    A state as wide or wider is returned as it is."""
    old = int(state["encoder.rest.0.weight"].shape[0])
    if width <= old:
        return state
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)

    def grow(w, rows, cols):
        """(o, i, ...) -> (rows, cols, ...): old in the corner, zeros elsewhere."""
        big = w.new_zeros((rows, cols, *w.shape[2:]))
        big[:w.shape[0], :w.shape[1]] = w
        return big

    for conv in ("encoder.rest.0", "encoder.rest.2"):
        w, b = state[f"{conv}.weight"], state[f"{conv}.bias"]
        cin = w.shape[1] if conv.endswith(".0") else width
        bound = 1 / math.sqrt(cin * w.shape[2] * w.shape[3])   # nn.Conv2d's default (kaiming_uniform a=sqrt5)
        big = grow(w, width, cin)
        big[old:] = (torch.rand(big[old:].shape, generator=gen) * 2 - 1) * bound
        out[f"{conv}.weight"] = big
        out[f"{conv}.bias"] = torch.cat([b, b.new_zeros(width - old)])
    for gdn in ("encoder.rest.1", "encoder.rest.3"):
        gamma = grow(state[f"{gdn}.gamma"], width, width)
        gamma[:old, old:] = 1e-6
        gamma[old:, old:] = 0.1 * torch.eye(width - old).view(width - old, width - old, 1, 1)
        out[f"{gdn}.gamma"] = gamma
        out[f"{gdn}.beta"] = torch.cat([state[f"{gdn}.beta"], state[f"{gdn}.beta"].new_ones(width - old)])
    w4 = state["encoder.rest.4.weight"]
    out["encoder.rest.4.weight"] = grow(w4, w4.shape[0], width)
    return out


def latent_digest(state: dict) -> str:
    """SHA-256 of what fixes the decoder's input y_hat = s + mu (encoder, gains, h_s), but not the
    h_s output clip `hyper.out.lo` (whose scale half models.training.calibrate raises) or the coder tables:
    a decoder trained on one model's latents is valid for another checkpoint exactly when their
    digests match."""
    h = hashlib.sha256()
    for k in sorted(state):
        if k.startswith(("encoder.", "hyper.")) and k != "hyper.out.lo" or k == "log_gain":
            h.update(k.encode() + state[k].detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_weights(model: nn.Module, state: dict, strict: bool = True):
    """load_state_dict, ignoring the `lambdas` buffer that session-1 checkpoints carried (the
    lambdas live in LAMBDAS and the checkpoint metadata now) and the coder's calibrated tables
    (`coder.*`, models.training.calibrate: they are read by export, not by the network)."""
    return model.load_state_dict({k: v for k, v in state.items() if k != "lambdas" and not k.startswith("coder.")},
                                 strict=strict)


# session 2's range (a session-3 joint run that moved the bottom to 5e-5 was +8..13 % worse after
# 2k steps and was stopped: models/training/configs/*_wide_joint.json, models/training/logs/*_wide_joint.csv)
LAMBDAS = (0.0002, 0.0005, 0.0012, 0.003, 0.007, 0.016, 0.04, 0.09)
# the "klt" architecture reaches higher: its 8th level aims at ~42 dB (MSE ~ 1 / (2 ln2 lambda 255^2)),
# the 9th (session 8: 1.1 bpp at quality 100 was below the 1.5 bpp target on val/gray) at ~46 dB
KLT_LAMBDAS = (0.0003, 0.0008, 0.002, 0.005, 0.012, 0.03, 0.075, 0.18, 0.432)
ENCODERS = {"gdn": RoverEncoder, "klt": KLTEncoder}


class REMAC(nn.Module):
    """One modality's full codec for training: rover graph, integer entropy model, ref-decoder.

    Quality: levels l = 0..L-1 carry learned gains (Cui et al. 2021); quality q in [0, 100] maps
    to t = q/100 * (L-1) and interpolates gains geometrically between neighbouring levels.

    arch "gdn": the session-1..3 models (4 x conv5x5/2 + GDN, M = 128, decoder from y only);
    arch "klt": KLTEncoder (M = 256 C) and a decoder with the linear synthesis path (no ceiling).
    """

    def __init__(self, channels, n=64, m=None, nz=64, decoder_extra=(0, 0, 0, 0), rate_proxy="noise",
                 decoder_wide=(0, 0, 0, 0), arch="gdn", decoder_width=(128, 96, 64, 32), decoder_skip=None,
                 lambdas=None, slices=None, spatial=False, lap=0, decoder_lap=0, encoder_width=None):
        """rate_proxy: "noise" (additive uniform noise, Balle et al.) or "ste" (the rounded latents the
        coder sees, straight-through): "ste" prices each latent as the range coder will.
        lap, decoder_lap: the klt encoder's and the linear synthesis's block overlap in pixels
        (KLTEncoder, RefDecoder); encoder_width: the klt encoder's correction-branch width (default n)."""
        super().__init__()
        if rate_proxy not in ("noise", "ste"):
            raise ValueError(f"rate_proxy must be 'noise' or 'ste', not {rate_proxy!r}")
        if arch not in ENCODERS:
            raise ValueError(f"arch must be one of {sorted(ENCODERS)}, not {arch!r}")
        klt = arch == "klt"
        m = m or (256 * channels if klt else 128)
        self.rate_proxy, self.arch = rate_proxy, arch
        self.lambdas = tuple(lambdas or (KLT_LAMBDAS if klt else LAMBDAS))
        self.channels, self.m, self.nz = channels, m, nz
        if lap and not klt:
            raise ValueError("lap (a lapped block transform) needs arch 'klt'")
        if encoder_width and not klt:
            raise ValueError("encoder_width (a wider correction branch) needs arch 'klt'")
        self.encoder = ENCODERS[arch](channels, n, m, nz, **({"lap": lap, "width": encoder_width} if klt else {}))
        self.hyper = HyperSynthesis(m, nz, slices=slices, spatial=spatial)
        self.z_prior = LogisticMixturePrior(nz)
        skip = klt if decoder_skip is None else decoder_skip
        self.decoder = RefDecoder(channels, m, width=decoder_width, extra=decoder_extra, wide=decoder_wide, skip=skip,
                                  lap=decoder_lap)
        levels = len(self.lambdas)
        lo, hi = (5.0, 40.0) if klt else (0.3, 2.0)     # klt: quantizer step 1/gain in pixel units
        init = torch.linspace(math.log(lo), math.log(hi), levels)[:, None].repeat(1, m)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())
        self.register_buffer("log_scales", torch.log(torch.as_tensor(spec.scale_table(), dtype=torch.float32)))

    @torch.no_grad()
    def init_basis(self, basis: torch.Tensor):
        """klt arch: set the encoder's block transform and the decoder's linear inverse to `basis`."""
        self.encoder.init_basis(basis)
        self.decoder.init_basis(basis)

    # ----- quality -> gains -------------------------------------------------------------------
    def gains_for_quality(self, q: torch.Tensor):
        """q: (B,) float in [0,100] -> (gain, inv_gain), each (B, M)."""
        levels = self.log_gain.shape[0]
        t = q / 100.0 * (levels - 1)
        lo = t.floor().clamp(0, levels - 2).long()
        f = (t - lo)[:, None]
        mix = lambda p: p[lo] * (1 - f) + p[lo + 1] * f
        return mix(self.log_gain).exp(), mix(self.log_inv_gain).exp()

    def gain_int(self, gain):
        return torch.floor(gain * 2 ** spec.GAIN_FRAC_BITS + 0.5)

    def ref_vector(self, ref_stats16, gain_int, ref_on):
        """ref_stats16: (B, 2, M) ints; gain_int (B, M); ref_on (B,) bool -> r (B, 2M+1) ints."""
        shift = spec.GAIN_FRAC_BITS + 2
        prod = ref_stats16.to(torch.int64) * gain_int.to(torch.int64)[:, None, :]
        r = ((prod + (1 << (shift - 1))) >> shift).clamp(-spec.REF_CLIP, spec.REF_CLIP).flatten(1).float()
        flag = torch.full_like(r[:, :1], 1 / spec.REF_SCALE)
        return torch.cat([r, flag], dim=1) * ref_on[:, None].float()

    @staticmethod
    def latent_stats(y):
        """y: (B,M,h,w) ungained latent -> (B,2,M) float (mean, mean |y - mean|): the rover's deep
        descriptor (rover_encoder.analysis.deep_descriptor) and, in 1/16 units, the library stats."""
        mean = y.mean(dim=(2, 3))
        mad = (y - mean[:, :, None, None]).abs().mean(dim=(2, 3))
        return torch.stack([mean, mad], dim=1)

    @staticmethod
    def latent_stats16(y):
        """y: (B,M,h,w) ungained latent -> (B,2,M) int stats (mean, mean |y - mean|) in units 1/16."""
        return torch.floor(REMAC.latent_stats(y) * 16 + 0.5)

    def gained_latents(self, y, q):
        """y (B,M,h,w) ungained latent, q (B,) quality -> (y_g, z, g_int, inv_gain): the latent gained
        by the integer gains the rover uses (their float gradient passed straight through), the
        hyper-latent z = h_a(y_g) before rounding, the integer gains (B,M) and inverse gains (B,M)."""
        gain, inv_gain = self.gains_for_quality(q)
        g_int = self.gain_int(gain.detach())
        gain_q = g_int / 2 ** spec.GAIN_FRAC_BITS + (gain - gain.detach())
        y_g = y * gain_q[:, :, None, None]
        return y_g, self.encoder.h_a(y_g), g_int, inv_gain

    # ----- training forward ---------------------------------------------------------------------
    def forward(self, x, x_ref, q, ref_on, decoder_ref_on=None, noisy=True, x_ref_entropy=None):
        """x, x_ref: (B,C,H,W) in [0,1]; q: (B,) quality; ref_on: (B,) bool; noisy: uniform-noise
        rate proxy (training) or rounded latents (evaluation). x_ref feeds the decoder and, unless
        x_ref_entropy is given (the rover may pick a different entropy reference), the entropy model.

        Returns {"x_hat": (B,C,H,W), "bits_y": (B,), "bits_z": (B,)}.
        """
        amp = torch.is_autocast_enabled(x.device.type)     # the caller's precision (models.precision)
        y, _ = self.encoder.analysis(x)
        y_g, z, g_int, inv_gain = self.gained_latents(y, q)
        with torch.no_grad():
            y_ref, _ = self.encoder.analysis(x_ref if x_ref_entropy is None else x_ref_entropy)
        r = self.ref_vector(self.latent_stats16(y_ref.float()), g_int, ref_on)
        y_g, z = y_g.float(), z.float()
        with torch.autocast(x.device.type, enabled=False):     # the integer path trains in fp32
            return self._entropy_and_synthesis(x_ref, y_g, z, r, inv_gain, noisy, decoder_ref_on, amp)

    def latent_bits(self, y_g, mu16, idx, noisy: bool):
        """-> (bits (B,) of the gained latent y_g (B,M,h,w) under the Gaussians of (mu16, idx),
        y_hat_g = round(y_g - mu) + mu): priced at y_hat_g, or with uniform noise when noisy."""
        mu = mu16 / 2 ** spec.MEAN_FRAC_BITS
        sigma = torch.exp(self.log_scales[0] + idx * (self.log_scales[1] - self.log_scales[0]))
        y_hat_g = round_half_up(y_g - mu) + mu
        y_tilde = y_g + torch.empty_like(y_g).uniform_(-0.5, 0.5) if noisy else y_hat_g
        return -torch.log2(gaussian_likelihood(y_tilde, mu, sigma)).sum((1, 2, 3)), y_hat_g

    def _entropy_and_synthesis(self, x_ref, y_g, z, r, inv_gain, noisy, decoder_ref_on, amp=False):
        z_hat = round_half_up(z).clamp(-spec.Z_CLIP, spec.Z_CLIP)
        ste = noisy and self.rate_proxy == "ste"
        z_tilde = z_hat if not noisy or ste else z + torch.empty_like(z).uniform_(-0.5, 0.5)
        bits_z = -torch.log2(self.z_prior.likelihood(z_tilde)).sum((1, 2, 3))
        mu16, idx = self.hyper.params(z_hat, r, y_g)
        bits_y, y_hat_g = self.latent_bits(y_g, mu16, idx, noisy and not ste)
        y_hat = y_hat_g * inv_gain[:, :, None, None]
        dec_ref = x_ref if decoder_ref_on is None else x_ref * decoder_ref_on[:, None, None, None].float()
        with torch.autocast(y_hat.device.type, dtype=torch.bfloat16, enabled=amp):   # float decoder: bf16 ok
            x_hat = self.decoder(y_hat, dec_ref)
        return {"x_hat": x_hat, "bits_y": bits_y, "bits_z": bits_z}
