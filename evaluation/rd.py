"""Rate-distortion measurement: every codec x setting x image -> bytes, bpp, PSNR, MS-SSIM.

Rates are real file sizes (headers included). REMAC runs its real rover and ground paths.
"""
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from evaluation.metrics import peak_for, psnr
from remac.ground_decoder.decode import decode
from remac.bitstream.spec import quality_steps
from remac.rover_encoder.encode import encode
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.imageio import from_pil

REMAC_QUALITIES = (5, 20, 35, 50, 65, 80, 90, 100)    # 100: the top level (>= 1.5 bpp on every val set)


class RemacCodec:
    """REMAC behind the same interface as evaluation.codecs adapters.

    refs: 'best' (the rover's selection, kept where it makes the stream smaller: the shipped
    behaviour), 'kept' (the rover's selection, always kept), 'off', 'random' (a random library entry
    of the same modality), 'worst' (the entry farthest from the image in descriptor space: a
    deliberate mismatch); 'random' and 'worst' are always kept.
    """

    def __init__(self, library, refs="best", qualities=REMAC_QUALITIES, seed=0, precision=None):
        """precision: rover analysis "int8" / "float", None = the shipped default (named plain "REMAC")."""
        self.library, self.refs, self.settings, self.precision = library, refs, list(qualities), precision
        self.name = "REMAC" if refs == "best" else f"REMAC refs={refs}"
        if precision:
            self.name += f" encoder={precision}"
        self.rng = random.Random(seed)

    def supports(self, channels):
        if self.precision:      # the default analysis is plain "REMAC": do not run it twice
            from remac.bitstream.modelfile import for_channels
            from remac.rover_encoder.analysis import default_precision
            return channels in (1, 3) and default_precision(for_channels(channels).name) != self.precision
        return channels in (1, 3)

    def _forced(self, img):
        if self.refs not in ("random", "worst"):
            return None
        from remac.bitstream.library import ranked
        from remac.bitstream.modelfile import for_channels
        ids = self.library.ids_for(for_channels(img.pixels.shape[0]).name)
        if self.refs == "random":
            pick = self.rng.choice(ids)
            return pick, pick
        kept = EncodeOptions(5000, library=self.library, keep_refs=True)
        best = encode(img, kept).entropy_ref       # the rover's choice, kept; its antipode
        worst = ranked(self.library.deep[best], {i: self.library.deep[i] for i in ids})[-1]
        return worst, worst

    def encode(self, image, quality, bit_depth=None):
        """bit_depth: the samples' true depth when a uint16 image holds fewer bits (12: 0..4095)."""
        img = from_pil(Image.fromarray(image), bit_depth=bit_depth)
        opts = EncodeOptions(quality_steps(quality), library=None if self.refs == "off" else self.library,
                             force_refs=self._forced(img), precision=self.precision, keep_refs=self.refs == "kept")
        return encode(img, opts).data

    def decode(self, data, shape):
        return decode(data, self.library).image.reshape(shape)




def ms_ssim(a, b, peak=255):
    """MS-SSIM (pytorch-msssim) of integer images with samples 0..peak; NaN where the image is too
    small for 5 scales."""
    if min(a.shape[:2]) < 161:
        return float("nan")
    from pytorch_msssim import ms_ssim as _ms
    t = lambda x: torch.from_numpy(x.astype(np.float32).reshape(x.shape[0], x.shape[1], -1)).permute(2, 0, 1)[None]
    return float(_ms(t(a), t(b), data_range=peak))


@dataclass
class Record:
    codec: str
    setting: float
    image: str
    channels: int
    bytes: int
    bpp: float
    psnr: float
    msssim: float


def measure(codec, images: dict, progress=None, bit_depth: int = 8):
    """images: {name: uint8 array, or uint16 array of bit_depth-bit samples (REMAC only)}. Yields one
    Record per (setting, image); PSNR and MS-SSIM use the true peak 2^bit_depth - 1."""
    peak = peak_for(bit_depth)
    for setting in codec.settings:
        for name, a in images.items():
            data = codec.encode(a, setting) if bit_depth == 8 else codec.encode(a, setting, bit_depth=bit_depth)
            out = codec.decode(data, a.shape)
            yield Record(codec.name, setting, name, 1 if a.ndim == 2 else 3, len(data),
                         8 * len(data) / (a.shape[0] * a.shape[1]), psnr(a, out, peak), ms_ssim(a, out, peak))
            if progress:
                progress()


def curve(records, codec):
    """Mean (bpp, PSNR, MS-SSIM) per setting, ordered by rate."""
    by = {}
    for r in records:
        if r.codec == codec:
            by.setdefault(r.setting, []).append(r)
    pts = [(float(np.mean([r.bpp for r in v])), float(np.mean([r.psnr for r in v])),
            float(np.nanmean([r.msssim for r in v])) if any(not math.isnan(r.msssim) for r in v) else float("nan"))
           for v in by.values()]
    return sorted(pts)


def bd_rate(anchor, test, metric=1):
    """BD-rate (%) of `test` vs `anchor` curves [(bpp, psnr, msssim)]; None where they do not overlap."""
    import bjontegaard as bd
    a, t = monotone(anchor, metric), monotone(test, metric)
    lo, hi = max(min(p[metric] for p in a), min(p[metric] for p in t)), min(max(p[metric] for p in a), max(p[metric] for p in t))
    if len(a) < 4 or len(t) < 4 or hi <= lo:
        return None
    try:
        return float(bd.bd_rate([p[0] for p in a], [p[metric] for p in a], [p[0] for p in t], [p[metric] for p in t],
                                method="akima", require_matching_points=False, min_overlap=0.0))
    except (ValueError, ZeroDivisionError, AssertionError):
        return None


def monotone(points, metric=1):
    """Rate-ordered points whose quality strictly increases (BD interpolation needs that)."""
    out = []
    for p in sorted(points):
        if not math.isnan(p[metric]) and (not out or (p[metric] > out[-1][metric] and p[0] > out[-1][0])):
            out.append(p)
    return out
