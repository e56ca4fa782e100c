"""Fit the preview heads of the shipped ground decoders (remac-decode --reduce N):
`python -m training.preview grey` (after training.export; needs ../shared/data).

A preview must cost a fraction of a full decode, so it runs only the ref-decoder's 1/16 trunk (the
cheapest ~15 % of its work) and maps the trunk's features to pixels with one 3x3 convolution: to
the 8 x 8 sub-pixels per latent pixel of the half-resolution image. The decoder has no trained
output at those scales, so the head is fitted here by ridge least squares to the box-downsampled
full decode of real streams (training images coded at several qualities, through the real coder).
The 1/4 and 1/8 heads are its outputs averaged 2 x 2 and 4 x 4 (models.ground.preview_stage),
which is exactly the least-squares head for those targets: least squares is linear in the target.

Measured alternatives (grey, validation frames, PSNR against the box-downsampled full decode,
1/2 / 1/4 / 1/8): a 1x1 head on the trunk 31.6 / 32.8 / 33.8 dB; the 3x3 head 39.8 / 43.0 /
44.9 dB; 3x3 on the 1/8 features 41.1 / 45.0 / 47.8 dB at ~3x the cost; decoding an average-
pooled latent map at the small size (no head) 20.4 / 18.8 / 16.9 dB.

Saves models/weights/<name>_preview.safetensors (weight, bias) tagged with the model ID and the
decoder version it was fitted to: a retrained decoder ignores a stale head (remac-decode then
decodes in full and box-downsamples, with a warning) until this is rerun.
"""
import argparse
import glob
import json

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from remac.bitstream import library as libmod
from evaluation.metrics import psnr
from remac.ground_decoder.decode import box_reduce, decode, synthesis_input
from remac.models import ground
from training import DATA
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import from_pil
from remac.rover_encoder.options import EncodeOptions
from remac.bitstream.spec import quality_steps

# (folder under DATA, images used, crop side)
FIT = {"grey": (("train/gray_native", 24, 512), ("train/gray", 16, 256)), "colour": (("train/color", 40, 256),)}
VAL = {"grey": ("val/gray_native", 8, 512), "colour": ("val/color", 8, 512)}
QUALITIES = (10, 30, 50, 70, 90)
RIDGE = 1e-3            # relative to the mean diagonal of the normal matrix


def crops(folder: str, count: int, side: int, channels: int) -> list:
    """Up to `count` images spread over the folder, top-left side x side crops cut to whole 64 px."""
    paths = sorted(glob.glob(str(DATA / folder / "*")))
    out = []
    for p in paths[::max(1, len(paths) // count)][:count]:
        a = np.asarray(Image.open(p).convert("L" if channels == 1 else "RGB"))[:side, :side]
        out.append(a[:a.shape[0] // 64 * 64, :a.shape[1] // 64 * 64])
    return out


def streams(images, library) -> list:
    return [encode(from_pil(Image.fromarray(a)), EncodeOptions(quality_steps(q), library=library)).data
            for a in images for q in QUALITIES]


def design(trunk: torch.Tensor) -> torch.Tensor:
    """(1,K,h,w) trunk features -> (h*w, 9K + 1) float64 rows: 3x3 neighbourhoods and a 1."""
    _, k, h, w = trunk.shape
    x = F.unfold(trunk, 3, padding=1)[0].T
    return torch.cat([x, torch.ones(h * w, 1)], dim=1).double()


def fit(name: str, library) -> tuple:
    """-> (weight (C*64, K, 3, 3), bias (C*64,)) fitted on FIT[name]."""
    gm = ground.load(name)
    xtx = xty = 0
    for folder, count, side in FIT[name]:
        for data in streams(crops(folder, count, side, gm.channels), library):
            header, _, y_map, x_ref, _, _ = synthesis_input(data, library)
            y_g = torch.from_numpy(y_map)[None]
            y_hat, stages = gm.prepare(y_g, header.quality, x_ref)
            with torch.inference_mode():
                x = design(gm.trunk(y_hat, stages, threads=2))
                full = F.avg_pool2d(gm.synthesize(y_g, header.quality, x_ref, threads=2), 2)
                if getattr(gm.decoder, "synth_lin", None) is not None:     # the head fits what the
                    full = full - gm.linear_path(y_hat, 1)                 # linear path leaves
                y = F.pixel_unshuffle(full, 8)[0].flatten(1).T.double()
            xtx, xty = xtx + x.T @ x, xty + x.T @ y
    xtx += RIDGE * xtx.diagonal().mean() * torch.eye(xtx.shape[0], dtype=xtx.dtype)
    sol = torch.linalg.solve(xtx, xty).T.float()                # (C*64, 9K + 1)
    k = gm.decoder.head.out_channels
    return sol[:, :-1].reshape(-1, k, 3, 3).contiguous(), sol[:, -1].contiguous()


def validate(name: str, library) -> dict:
    """{reduce: (mean, min) PSNR of the preview against the box-downsampled full decode} on VAL."""
    folder, count, side = VAL[name]
    scores = {r: [] for r in (1, 2, 3)}
    for data in streams(crops(folder, count, side, ground.load(name).channels), library):
        full = decode(data, library).image
        full = full[..., None] if full.ndim == 2 else full
        for r in scores:
            preview = decode(data, library, reduce=r).image
            scores[r].append(psnr(preview.reshape(box_reduce(full, r).shape), box_reduce(full, r)))
    return {r: (round(float(np.mean(v)), 2), round(float(np.min(v)), 2)) for r, v in scores.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=sorted(FIT))
    args = ap.parse_args(argv)
    library = libmod.load()
    for name in args.names:
        gm = ground.load(name)
        weight, bias = fit(name, library)
        meta = {"model_id": gm.model_id.hex(), "decoder_version": gm.decoder_version,
                "fit": json.dumps({"sets": FIT[name], "qualities": QUALITIES, "ridge": RIDGE})}
        save_file({"weight": weight, "bias": bias}, str(ground.preview_weights_path(name)), metadata=meta)
        gm._preview = None                                      # reload the new head
        scores = validate(name, library)
        meta["validation"] = json.dumps({"set": VAL[name], "qualities": QUALITIES, "psnr_mean_min": scores})
        save_file({"weight": weight, "bias": bias}, str(ground.preview_weights_path(name)), metadata=meta)
        print(f"{name}: preview PSNR vs box-downsampled full decode (mean, min dB) "
              + ", ".join(f"1/{2 ** r}: {s}" for r, s in scores.items()))


if __name__ == "__main__":
    main()
