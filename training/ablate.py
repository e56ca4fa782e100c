"""Reference ablations of a trained model, at matched rate: `python -m training.ablate grey DIR`.

For each validation image the rover's own selection picks the entropy and decoder references from
the default library (rover_encoder.encode); the training forward then codes the image with rounded
latents (bits from the model's likelihoods, an estimate of the real coder's rate) in four ways:

    full           entropy model and decoder see their references
    entropy off    the entropy model sees none (r = 0), the decoder does
    decoder off    the decoder sees a blank reference, the entropy model does
    both off       neither (what `remac-encode --no-refs` streams decode as)

and reports each variant's BD-rate against `full` (positive: the references were worth that much).
The third ablation (a moderate decoder instead of the heavy ref-decoder) is a different model:
`training.train --stage decoder` trains the heavier one on frozen latents, and training.promote ranks it.
"""
import argparse
import glob
import os

import numpy as np
import torch

from training.compare import QUALITIES, image_tensor
from remac.models.codec import load_model
from training.train import rd_loss
from remac.rover_encoder.options import EncodeOptions

VARIANTS = {"full": (True, True), "entropy off": (False, True), "decoder off": (True, False),
            "both off": (False, False)}


def references(path, channels, library):
    """The rover's (entropy, decoder) reference images for the image at `path`: (1,C,h,w) each."""
    from remac.rover_encoder.encode import encode
    from remac.rover_encoder.imageio import load_image
    res = encode(load_image(path), EncodeOptions(5000, library=library))
    return tuple(image_tensor(library.image_path(i), channels)[None] for i in (res.entropy_ref, res.decoder_ref))


@torch.no_grad()
def curves(model, images, library) -> dict:
    """-> {variant: [(bpp, psnr) per quality]} averaged over images."""
    out = {v: np.zeros((len(QUALITIES), 2)) for v in VARIANTS}
    for path in images:
        x = image_tensor(path, model.channels)[None]
        h, w = x.shape[2] // 64 * 64, x.shape[3] // 64 * 64        # the hyper-latent is at 1/64
        x = x[:, :, :h, :w]
        eref, dref = references(path, model.channels, library)
        for variant, (ent, dec) in VARIANTS.items():
            for i, q in enumerate(QUALITIES):
                _, mse, bpp = rd_loss(model, x, dref, torch.tensor([float(q)]), torch.tensor([ent]),
                                      torch.tensor([dec]), noisy=False, x_ref_entropy=eref)
                out[variant][i] += (bpp.item(), 10 * np.log10(1 / mse.item()))
    return {v: (a / len(images)).tolist() for v, a in out.items()}


def main(argv=None):
    import bjontegaard
    from remac.bitstream import library as libmod
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=("grey", "colour"))
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = sorted(glob.glob(os.path.join(args.folder, "*")))[:args.limit]
    res = curves(load_model(args.name), images, libmod.load())
    full = np.array(res["full"])
    print(f"{args.name}, {len(images)} images of {args.folder} (estimated bits, rounded latents)")
    print("| variant | BD-rate vs full (PSNR) | points (bpp / PSNR dB) |\n|---|---|---|")
    for variant, pts in res.items():
        pts = np.array(pts)
        bd = 0.0 if variant == "full" else bjontegaard.bd_rate(full[:, 0], full[:, 1], pts[:, 0], pts[:, 1],
                                                                 method="akima")
        print(f"| {variant} | {bd:+.2f}% | " + "; ".join(f"{b:.3f} / {p:.2f}" for b, p in pts) + " |")


if __name__ == "__main__":
    main()
