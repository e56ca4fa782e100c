"""The rover's analysis networks, g_a + h_a (exported to ONNX: the rover runs the export, never this
code): RoverEncoder (4 x conv5x5/2 + GDN) and KLTEncoder (a KLT block transform plus a learned
correction), and the lapped block-transform kernels that KLTEncoder and RefDecoder's linear
synthesis share."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from remac.models.layers import SimpleGDN


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
        """basis: (M, C*256) orthonormal rows (training.data.klt_basis), strongest first;
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
