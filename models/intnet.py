"""Fake-quantized integer layers (Balle et al. 2019, "Integer networks for data compression").

Training runs these in float with straight-through rounding; `export()` turns each layer into the
exact integer arrays that `bitstream.intnet` executes in numpy on both rover and ground. The forward
pass here *is* the integer network, up to float32 summation error in training:

    acc  = conv(x_int, W_int) + B_int                       (integers)
    out  = clip((acc * M + 2**(S-1)) >> S, lo, hi)          (per output channel c)

with W_int = round(W / s_w[c]), s_w[c] = max|W[c]| / 127 and M = round(s_w * s_in / s_out * 2**S).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from remac.bitstream import spec


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """floor(x + 0.5) with a straight-through gradient (matches numpy's integer requantization)."""
    return x + (torch.floor(x + 0.5) - x).detach()


class QConv(nn.Module):
    """k x k 'same' conv, integer inputs in units of `s_in`, integer outputs in units of `s_out`.

    out_scale / lo / hi may be per-output-channel lists (used by the final mean/scale layer).
    """

    def __init__(self, cin, cout, k, s_in, s_out, lo=0, hi=spec.ACT_MAX, revive=False):
        """revive: the output clip passes gradients that point back into [lo, hi] (for the entropy
        parameters: a scale index stuck below 0 must still learn to grow; hidden layers clip as ReLU6)."""
        super().__init__()
        self.revive = revive
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.k, self.s_in = k, float(s_in)
        as_vec = lambda v: torch.as_tensor(v, dtype=torch.float32).expand(cout).clone()
        self.register_buffer("s_out", as_vec(s_out))
        self.register_buffer("lo", as_vec(lo))
        self.register_buffer("hi", as_vec(hi))

    def _quantized(self):
        s_w = (self.weight.detach().abs().amax(dim=(1, 2, 3)) / spec.WEIGHT_MAX).clamp_min(1e-8)
        w_int = round_half_up(self.weight / s_w[:, None, None, None])
        b_int = round_half_up(self.bias / (s_w * self.s_in))
        mult = torch.floor(s_w * self.s_in / self.s_out * 2 ** spec.REQUANT_SHIFT + 0.5)
        return w_int, b_int, mult

    def forward(self, x):
        w_int, b_int, mult = self._quantized()
        acc = F.conv2d(x, w_int, b_int, padding=self.k // 2)
        real = acc * (mult / 2 ** spec.REQUANT_SHIFT)[None, :, None, None]
        out = round_half_up(real)
        lo, hi = self.lo[None, :, None, None], self.hi[None, :, None, None]
        return revive_clip(out, lo, hi) if self.revive else torch.maximum(torch.minimum(out, hi), lo)

    @torch.no_grad()
    def export(self) -> dict:
        w_int, b_int, mult = self._quantized()
        return {"kind": "conv", "weight": w_int.to(torch.int64).numpy(), "bias": b_int.to(torch.int64).numpy(),
                "mult": mult.to(torch.int64).numpy(), "lo": self.lo.to(torch.int64).numpy(),
                "hi": self.hi.to(torch.int64).numpy()}


class _ReviveClip(torch.autograd.Function):
    """clip(x, lo, hi) forward; backward passes the gradient inside the range and, outside it, only
    where a descent step moves x back towards the range."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x, lo, hi)
        return torch.maximum(torch.minimum(x, hi), lo)

    @staticmethod
    def backward(ctx, grad):
        x, lo, hi = ctx.saved_tensors
        keep = ((x >= lo) & (x <= hi)) | ((x < lo) & (grad < 0)) | ((x > hi) & (grad > 0))
        return grad * keep.to(grad.dtype), None, None


def revive_clip(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """clip(x, lo, hi) whose gradient, outside the range, still flows where it points back in."""
    return _ReviveClip.apply(x, lo, hi)


class DepthToSpace(nn.Module):
    """(B, C*4, H, W) -> (B, C, 2H, 2W), torch pixel_shuffle order."""

    def forward(self, x):
        return F.pixel_shuffle(x, 2)

    def export(self) -> dict:
        return {"kind": "d2s"}
