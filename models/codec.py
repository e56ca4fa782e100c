"""REMAC, one modality's whole codec as it is trained and exported (1-channel grey or 3-channel colour),
and how a checkpoint's tensors lay it out (architecture, load_weights, latent_digest).

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
from pathlib import Path

import torch
import torch.nn as nn

from remac.bitstream import spec
from remac.models.checkpoint import WEIGHTS, read_checkpoint
from remac.models.hyper import HyperSynthesis, LogisticMixturePrior, gaussian_likelihood
from remac.models.intnet import round_half_up
from remac.models.ref_decoder import RefDecoder, decoder_layout
from remac.models.rover_nets import KLTEncoder, RoverEncoder, kernel_lap


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


def latent_digest(state: dict) -> str:
    """SHA-256 of what fixes the decoder's input y_hat = s + mu (encoder, gains, h_s), but not the
    h_s output clip `hyper.out.lo` (whose scale half training.calibrate raises) or the coder tables:
    a decoder trained on one model's latents is valid for another checkpoint exactly when their
    digests match."""
    h = hashlib.sha256()
    for k in sorted(state):
        if k.startswith(("encoder.", "hyper.")) and k != "hyper.out.lo" or k == "log_gain":
            h.update(k.encode() + state[k].detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_weights(model: nn.Module, state: dict, strict: bool = True):
    """load_state_dict, ignoring the `lambdas` buffer that the first GDN checkpoints carried (the
    lambdas live in LAMBDAS and the checkpoint metadata now) and the coder's calibrated tables
    (`coder.*`, training.calibrate: they are read by export, not by the network)."""
    return model.load_state_dict({k: v for k, v in state.items() if k != "lambdas" and not k.startswith("coder.")},
                                 strict=strict)


# the GDN models' range (a joint run that moved the bottom to 5e-5 was +8..13 % worse after 2k
# steps: every level's gain had to move at once and the low end collapsed; training/logs/*_wide_joint.csv)
LAMBDAS = (0.0002, 0.0005, 0.0012, 0.003, 0.007, 0.016, 0.04, 0.09)


# the "klt" architecture reaches higher: its 8th level aims at ~42 dB (MSE ~ 1 / (2 ln2 lambda 255^2)),
# the 9th (with 8 levels quality 100 gave only 1.1 bpp on val/gray, below the 1.5 bpp target) at ~46 dB
KLT_LAMBDAS = (0.0003, 0.0008, 0.002, 0.005, 0.012, 0.03, 0.075, 0.18, 0.432)


ENCODERS = {"gdn": RoverEncoder, "klt": KLTEncoder}


class REMAC(nn.Module):
    """One modality's full codec for training: rover graph, integer entropy model, ref-decoder.

    Quality: levels l = 0..L-1 carry learned gains (Cui et al. 2021); quality q in [0, 100] maps
    to t = q/100 * (L-1) and interpolates gains geometrically between neighbouring levels.

    arch "gdn": the first models, kept for their archived releases (4 x conv5x5/2 + GDN, M = 128,
    decoder from y only; their transforms capped PSNR at ~36 dB whatever the quantizer);
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


CHANNELS = {"grey": 1, "colour": 3}


def checkpoint_path(name: str) -> Path:
    return WEIGHTS / f"{name}.safetensors"


def load_model(name: str, weights: Path = None) -> REMAC:
    """A joint checkpoint (encoder, entropy model, decoder with however many extra blocks it holds)."""
    return model_from_state(name, read_checkpoint(weights or checkpoint_path(name)))


def model_from_state(name: str, state: dict) -> REMAC:
    """A checkpoint's tensors -> REMAC in eval mode, its decoder laid out as the tensors say."""
    model = REMAC(CHANNELS[name], **architecture(state))
    load_weights(model, state)
    return model.eval()
