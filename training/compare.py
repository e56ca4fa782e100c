"""Estimated rate-distortion of training checkpoints against each other:
`python -m training.compare grey ../shared/data/val/gray A.safetensors B.safetensors ...`

Each checkpoint codes the first `--limit` images of the folder (top-left `--crop` pixels) at
qualities 5..95 with rounded latents; bits come from the model's own likelihoods (Gaussian y
tables, learned z prior), not from the real coder, so this ranks networks quickly during training
and is how training attempts are judged quickly. Prints each curve and its BD-rate (PSNR) against the
first checkpoint; `--ceiling` adds the unquantized-vs-rounded diagnostic per quality. Real-coder numbers: remac-eval / scripts/benchmarks.sh.
"""
import argparse
import glob
import os

import numpy as np
import torch
from PIL import Image

from remac.models.codec import load_model
from training.train import rd_loss

QUALITIES = (5, 20, 35, 50, 65, 80, 95)


def image_tensor(path, channels: int) -> torch.Tensor:
    """An image file -> (C, H, W) float in [0, 1], as grey (C=1) or RGB (C=3)."""
    a = np.asarray(Image.open(path).convert("L" if channels == 1 else "RGB"))
    return torch.from_numpy((a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).copy()).float() / 255


def load_crops(folder: str, channels: int, limit: int, crop: int) -> torch.Tensor:
    """-> (N, C, crop, crop) float in [0, 1]; images must be at least crop x crop."""
    paths = sorted(glob.glob(os.path.join(folder, "*")))[:limit]
    return torch.stack([image_tensor(p, channels)[:, :crop, :crop] for p in paths])


@torch.no_grad()
def curve(model, x: torch.Tensor) -> list:
    """-> [(bpp, PSNR dB)] per quality, averaged over images; each image's reference is its neighbour."""
    on = torch.ones(len(x), dtype=torch.bool)
    points = []
    for q in QUALITIES:
        _, mse, bpp = rd_loss(model, x, x.roll(1, 0), torch.full((len(x),), float(q)), on, noisy=False)
        points.append((bpp.mean().item(), (10 * torch.log10(1 / mse)).mean().item()))
    return points


@torch.no_grad()
def ceiling(model, x: torch.Tensor) -> list:
    """The quality-ceiling diagnostic: -> [(q, PSNR rounded, PSNR unquantized)] per quality, no
    references. If the unquantized latent decodes barely better than the rounded one at the top
    quality, the transforms, not the quantizer, cap quality (the old GDN codec: ~0.3 dB at the top quality)."""
    rows = []
    y, _ = model.encoder.analysis(x)
    blank = torch.zeros_like(x)
    for q in QUALITIES + (100,):
        qq = torch.full((len(x),), float(q))
        _, mse, _ = rd_loss(model, x, blank, qq, torch.zeros(len(x), dtype=torch.bool), noisy=False)
        _, inv_gain = model.gains_for_quality(qq)
        y_g, _, _, _ = model.gained_latents(y, qq)
        x_hat = model.decoder(y_g * inv_gain[:, :, None, None], blank).clamp(0, 1)
        psnr = lambda m: (10 * torch.log10(1 / m.clamp_min(1e-10))).mean().item()
        rows.append((q, psnr(mse), psnr((x_hat - x).pow(2).mean((1, 2, 3)))))
    return rows


def main(argv=None):
    import bjontegaard
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=("grey", "colour"))
    ap.add_argument("folder")
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ceiling", action="store_true", help="also print PSNR with rounded vs unquantized latents")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    curves = {}
    for path in args.checkpoints:
        model = load_model(args.name, weights=path)
        x = load_crops(args.folder, model.channels, args.limit, args.crop)
        curves[path] = np.array(curve(model, x))
        line = " ".join(f"{b:.3f}/{p:.2f}" for b, p in curves[path])
        if path != args.checkpoints[0]:
            base = curves[args.checkpoints[0]]
            bd = bjontegaard.bd_rate(base[:, 0], base[:, 1], curves[path][:, 0], curves[path][:, 1], method="akima")
            line += f"  BD-rate vs first: {bd:+.2f}%"
        print(f"{path}: {line}", flush=True)
        if args.ceiling:
            print("  ceiling (q: rounded / unquantized dB): "
                  + ", ".join(f"{q}: {a:.2f}/{b:.2f}" for q, a, b in ceiling(model, x)), flush=True)


if __name__ == "__main__":
    main()
