"""The ground's ref-decoder: (y_hat, reference image) -> x_hat, multi-scale, fused with the
reference's features; decoder_layout reads a checkpoint's decoder shape back from its tensors."""
import torch
import torch.nn as nn

from remac.models.layers import ResBlock, Upsample2, StatModulation, CrossAttention, conv
from remac.models.rover_nets import kernel_lap, lapped_kernel


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
        (the high-resolution scales are only 32-64 channels wide, and the GDN codec's PSNR
        saturated at high rate even with unquantized latents). All start as the identity, so a
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
