"""Rank a candidate checkpoint against the shipped model with the real coder:
`python -m training.rank grey CANDIDATE.safetensors`.

Both checkpoints go through the same path, image by image and quality by quality:

    image --edge-pad to 64--> torch analysis (the float ONNX's graph) --> y, z
      z_hat = round(z) --> exported integer h_s (bitstream.intnet) --> mu16, scale index
      s = the rover's symbol choice (round(y*gain - mu), RDO_LAMBDA) --> exported coder tables --> constriction words --> .rmc container (bytes)
      y_hat_g = s + mu16/16 --> the checkpoint's decoder (fp16 weights, as shipped) --> 8-bit PSNR

one tile per image, no references (they move the rate by < 0.5 %; docs/BENCHMARKS.md). The
candidate's tables are exported from the checkpoint as it is (run training.calibrate on it
first: promote does). JPEG 2000 (evaluation.codecs, as remac-eval runs it) is coded on the same
images as the anchor. Prints RD points per val set and BD-rates (PSNR): each model vs JPEG 2000
over its own range (the product's measure: a model that saturates early is judged where it still
overlaps) and candidate vs shipped over their overlap; rank() returns them for
training.promote.
"""
import argparse
import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from remac.bitstream import container, entropy, latent, modelfile, spec
from remac.bitstream.container import Header
from evaluation import metrics
from evaluation.variants import COLOUR_SETS, GRID_FREE, write_set
from training import DATA
from training.compare import image_tensor
from training.export import export
from remac.models.codec import load_model
from remac.rover_encoder.prepared import RDO_LAMBDA

QUALITIES = (5, 20, 35, 50, 65, 80, 95, 100)
VAL_SETS = {"grey": ("val/gray", "val/gray_native", "val/color")}     # colour: as Y, Cb, Cr planes (format 3.0)
# what rank() codes: the val sets as they are (the sources' JPEG grid lines up with the 16x16 blocks),
# then the grid-free and colour variants (evaluation.variants) that training.promote decides on
RANKED_SETS = {"grey": VAL_SETS["grey"] + GRID_FREE + COLOUR_SETS[1:]}


@functools.lru_cache(maxsize=1)
def planes_overhead() -> int:
    """Bytes that three one-plane streams carry beyond the one planar stream holding the same tiles
    (two more signatures and headers, less the planar header's chroma field and colour transform)."""
    empty = lambda h: len(container.write(h, {i: np.zeros(0, np.uint32) for i in range(h.tile_count)}))
    one = Header(bytes(8), 64, 64, 1, 1, 8, 50, 64, 64)
    planar = Header(bytes(8), 64, 64, 3, 3, 8, 50, 64, 64, planes=1, chroma_shift=1, chroma_q100=6500,
                    colour_transform=bytes([85, 85, 0, 128, 128]))
    return 3 * empty(one) - empty(planar)


def set_channels(folder: str) -> int:
    """Channels of a val set's images (or of a "<folder> <kind>" set): 3 for the colour sets
    (coded as planes), else 1."""
    return 3 if "color" in Path(folder).name else 1


@torch.no_grad()
def code_planes(model, em, x: torch.Tensor, q: float):
    """x (1,3,H,W) RGB in [0,1] -> (bytes of the one planar stream, x_hat (1,3,H,W) 8-bit-rounded):
    Y at q and the chroma planes at the encoder's chroma quality, through the image's own colour
    transform, each as rover_encoder.planar codes them."""
    from remac.bitstream import colour
    from remac.rover_encoder.planar import CHROMA_SHIFT, chroma_quality
    transform = colour.fit_transform(x[0].numpy())
    planes = colour.to_planes(x[0].numpy(), CHROMA_SHIFT, transform)
    cq = chroma_quality(spec.quality_steps(q)) / spec.QUALITY_STEPS
    size, decoded = -planes_overhead(), []
    for k, (plane, quality) in enumerate(zip(planes, (q, cq, cq))):
        data, p_hat = code_image(model, em, torch.from_numpy(plane)[None, None], quality, rounded=False, chroma=k > 0)
        size += len(data)
        decoded.append(p_hat[0, 0].numpy())
    rgb = np.clip(colour.from_planes(decoded, CHROMA_SHIFT, transform), 0, 1)
    return size, torch.from_numpy(np.round(rgb * 255) / 255).float()[None]


@torch.no_grad()
def code_image(model, em, x: torch.Tensor, q: float, rounded: bool = True, chroma: bool = False):
    """x (1,C,H,W) in [0,1] -> (stream bytes, x_hat (1,C,H,W) in [0,1], 8-bit-rounded unless not
    rounded); chroma: x is a Cb or Cr plane (its scale-index floors)."""
    _, c, h, w = x.shape
    xp = F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")
    q100 = spec.quality_steps(q)
    gain_int = spec.gain_int_at(em.gain_int, q100)
    gain = torch.from_numpy((gain_int / 2 ** spec.GAIN_FRAC_BITS).astype(np.float32))
    y, z, _ = model.encoder(xp, gain[None, :, None, None])
    z_hat = np.clip(np.floor(z[0].double().numpy() + 0.5), -spec.Z_CLIP, spec.Z_CLIP).astype(np.int64)
    words, mu16, _, symbols = latent.encode(em.net, z_hat, spec.ref_input(None, gain_int),
                                            y[0].numpy() * gain.numpy()[:, None, None], em.z_tables, em.y_tables,
                                            em.floors_at(q100, chroma), RDO_LAMBDA, em.spatial_at(q100))
    header = Header(em.model_id, w, h, c, c, 8, q100 // spec.QUALITY_STEPS, xp.shape[3], xp.shape[2],
                    quality_frac=q100 % spec.QUALITY_STEPS)
    data = container.write(header, {0: words})
    _, inv_gain = model.gains_for_quality(torch.tensor([q100 / spec.QUALITY_STEPS]))
    y_hat = torch.from_numpy(entropy.dequantize(symbols, mu16))[None] * inv_gain[:, :, None, None]
    x_hat = model.decoder(y_hat, torch.zeros(1, c, 64, 64))[:, :, :h, :w]
    x_hat = x_hat.clamp(0, 1)
    return data, (torch.round(x_hat * 255) / 255 if rounded else x_hat)


def jpeg2000_curve(paths, channels: int) -> np.ndarray:
    """-> (S, 2) mean (bpp, PSNR dB) of JPEG 2000 over the images (evaluation.codecs settings)."""
    from evaluation.codecs import JPEG2000
    codec, points = JPEG2000(), []
    for setting in codec.settings:
        bpp, psnr = [], []
        for path in paths:
            x = (image_tensor(path, channels) * 255).round().numpy().astype(np.uint8)
            image = x[0] if channels == 1 else x.transpose(1, 2, 0)
            data = codec.encode(image, setting)
            out = codec.decode(data, image.shape)
            bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
            psnr.append(metrics.psnr(image, out))
        points.append((np.mean(bpp), np.mean(psnr)))
    return np.array(sorted(points))


def bd(anchor: np.ndarray, test: np.ndarray):
    """BD-rate (%) of test vs anchor (Q,2) curves over their overlap (evaluation.rd.bd_rate: the
    strictly increasing part of each), or None where they do not overlap."""
    from evaluation.rd import bd_rate
    triples = lambda c: [(float(b), float(p), float("nan")) for b, p in c]
    return bd_rate(triples(anchor), triples(test))


def rd_curve(model, em, paths, qualities=QUALITIES, channels: int = 1) -> np.ndarray:
    """-> (Q, 2) mean (bpp, PSNR dB) over the images, real bytes (channels 3: RGB as planes)."""
    points = []
    for q in qualities:
        bpp, psnr = [], []
        for path in paths:
            x = image_tensor(path, channels)[None]
            if channels == 3 and model.channels == 1:
                size, x_hat = code_planes(model, em, x, q)
            else:
                data, x_hat = code_image(model, em, x, q)
                size = len(data)
            bpp.append(8 * size / (x.shape[2] * x.shape[3]))
            psnr.append(metrics.psnr((x * 255).round().numpy(), (x_hat * 255).numpy()))
        points.append((np.mean(bpp), np.mean(psnr)))
    return np.array(points)


def shipped_model(name: str):
    """(REMAC with the shipped checkpoint's decoder rounded to fp16, its exported EntropyModel)."""
    model = load_model(name)
    model.decoder.half().float()
    return model, modelfile.load(name)


def candidate_model(name: str, weights: Path, folder: Path):
    """Export `weights` into `folder` (a model directory) -> (REMAC, EntropyModel)."""
    export(name, weights=weights, out=folder)
    model = load_model(name, weights=weights)
    model.decoder.half().float()
    return model, modelfile.load_dir(Path(folder))


def set_paths(data, set_name: str, tmp: Path, limit: int = None) -> list:
    """The first `limit` images of a RANKED_SETS entry: a val folder, or "<folder> <kind>", that
    folder's images derived by evaluation.variants into `tmp`."""
    folder, _, kind = set_name.partition(" ")
    if kind:
        return write_set(Path(data) / folder, kind, tmp / set_name.replace("/", "_").replace(" ", "_"), limit)
    return sorted(p for p in (Path(data) / folder).iterdir() if p.is_file())[:limit]


def rank(name: str, candidate: Path, data=DATA, limit: int = None, qualities=QUALITIES, log=print) -> dict:
    """-> {set: {"shipped", "candidate", "jpeg2000": (Q,2) curves, "shipped_vs_j2k",
    "candidate_vs_j2k", "candidate_vs_shipped": BD-rates in % (negative: better), or None}} for
    every set of RANKED_SETS[name]."""
    results = {}
    fmt = lambda v: "n/a" if v is None else f"{v:+.2f}%"
    with tempfile.TemporaryDirectory() as tmp:
        models = {"shipped": shipped_model(name), "candidate": candidate_model(name, candidate, Path(tmp))}
        for folder in RANKED_SETS[name]:
            paths = set_paths(data, folder, Path(tmp), limit)
            channels = set_channels(folder)
            res = {k: rd_curve(m, em, paths, qualities, channels) for k, (m, em) in models.items()}
            res["jpeg2000"] = jpeg2000_curve(paths, channels)
            res["shipped_vs_j2k"] = bd(res["jpeg2000"], res["shipped"])
            res["candidate_vs_j2k"] = bd(res["jpeg2000"], res["candidate"])
            res["candidate_vs_shipped"] = bd(res["shipped"], res["candidate"])
            results[folder] = res
            for k in ("shipped", "candidate", "jpeg2000"):
                log(f"{folder} {k}: " + " ".join(f"{r:.3f}/{p:.2f}" for r, p in res[k]))
            log(f"{folder}: BD-rate vs JPEG 2000: shipped {fmt(res['shipped_vs_j2k'])}, candidate "
                f"{fmt(res['candidate_vs_j2k'])}; candidate vs shipped {fmt(res['candidate_vs_shipped'])}")
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(VAL_SETS))
    ap.add_argument("candidate")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--limit", type=int, help="first N images of each val set")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rank(args.name, Path(args.candidate), args.data, args.limit)


if __name__ == "__main__":
    main()
