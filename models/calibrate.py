"""Per-channel scale-index floors, chosen by the real coder's bit count on training crops.

Training prices latents with the uniform-noise proxy, which under-prices a latent at 0.5..1 from
its predicted mean when the predicted scale is tiny: rounding sends it to +-1, which the coder pays
~17 bits for (count 1 of 2^16). Session 1's grey model predicted the smallest scale for two whole
channels that are non-zero half the time (about 0.04 bpp of such symbols at quality 5).

The integer h_s already clips each channel's scale index to [lo_c, hi_c]; this raises lo_c to the
value that minimises the exact table cost summed over training crops and qualities:

    bits_c(k) = sum over (crop, quality, position) of cost[max(idx, k), s]

(cost = -log2 of the integer table count, escapes included). Only probabilities change, never the
symbols, so reconstruction is untouched; rover and ground read lo from the same integer arrays.
`python -m models.calibrate grey colour` rewrites hyper.out.lo in models/weights/<name>.safetensors;
export afterwards.
"""
import argparse
import os

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bitstream import spec
from models.data import load_set, train_folders
from models.export import CHANNELS, checkpoint_path, load_model, y_tables
from models.intnet import round_half_up

HERE = os.path.dirname(os.path.abspath(__file__))
QUALITIES = (0, 10, 25, 40, 55, 70, 85, 100)
S_RANGE = 600           # |s| beyond this is counted as an escape at every scale (rare)


def cost_matrix():
    """(T, 2R+1) bits of coding s in [-R, R] with table t, escapes (+16 raw bits) included."""
    counts, offsets, sizes = y_tables()
    s = np.arange(-S_RANGE, S_RANGE + 1)
    cost = np.empty((len(sizes), len(s)))
    for t in range(len(sizes)):
        rel = s - offsets[t]
        inside = (rel >= 0) & (rel < sizes[t])
        p = np.where(inside, counts[t, np.clip(rel, 0, sizes[t] - 1)], counts[t, sizes[t]])
        cost[t] = -np.log2(p / 2 ** spec.PROB_BITS) + 16 * ~inside
    return cost


@torch.no_grad()
def histogram(model, images: torch.Tensor, qualities=QUALITIES, batch=16) -> np.ndarray:
    """-> H (M, T, 2R+1): how often channel c got scale index t and symbol s (refs off and on)."""
    m, t_levels = model.m, spec.SCALE_LEVELS
    hist = np.zeros((m, t_levels, 2 * S_RANGE + 1))
    for start in range(0, len(images), batch):
        x = images[start:start + batch].float() / 255
        y, _ = model.encoder.analysis(x)
        ref_y, _ = model.encoder.analysis(x.roll(1, 0))
        for q in qualities:
            y_g, z, g_int, _ = model.gained_latents(y, torch.full((len(x),), float(q)))
            z_hat = round_half_up(z).clamp(-spec.Z_CLIP, spec.Z_CLIP)
            for on in (False, True):
                r = model.ref_vector(model.latent_stats16(ref_y), g_int, torch.full((len(x),), on))
                mu16, idx = model.hyper(z_hat, r)
                s = torch.floor(y_g - mu16 / 2 ** spec.MEAN_FRAC_BITS + 0.5).clamp(-S_RANGE, S_RANGE)
                ch = torch.arange(m)[None, :, None, None].expand_as(s)
                flat = (ch * t_levels + idx.long()) * (2 * S_RANGE + 1) + (s.long() + S_RANGE)
                hist += np.bincount(flat.flatten().numpy(), minlength=hist.size).reshape(hist.shape)
    return hist


def best_floors(hist: np.ndarray, cost: np.ndarray, lo_now: np.ndarray) -> tuple:
    """-> (lo (M,) int, bits before, bits after) minimising sum cost[max(t, k), s] per channel."""
    row = (hist * cost[None]).sum(-1)                   # (M, T): bits of the rows as they are
    below = np.cumsum(hist, axis=1)                     # (M, T, S): symbols at index <= k
    merged = (below * cost[None]).sum(-1)               # (M, T): those symbols coded with table k
    above = row[:, ::-1].cumsum(1)[:, ::-1]             # (M, T): bits of rows >= k
    bits = merged + np.concatenate([above[:, 1:], np.zeros((len(row), 1))], axis=1)
    bits[np.arange(cost.shape[0])[None, :] < lo_now[:, None]] = np.inf     # floors only rise
    lo = bits.argmin(1)
    before = bits[np.arange(len(lo)), lo_now]
    return lo, float(before.sum()), float(bits[np.arange(len(lo)), lo].sum())


def calibrate(name: str, data_dir: str, count: int = 192, write: bool = True, weights=None):
    """weights: the checkpoint to calibrate (default: the shipped models/weights/<name>.safetensors)."""
    path = weights or checkpoint_path(name)
    model = load_model(name, weights=path)
    images, _ = load_set(data_dir, train_folders(name), CHANNELS[name])
    pick = torch.from_numpy(np.random.default_rng(0).choice(len(images), min(count, len(images)), replace=False))
    hist = histogram(model, images[pick])
    m = model.m
    lo_now = model.hyper.out.lo[m:].long().numpy()
    lo, before, after = best_floors(hist, cost_matrix(), lo_now)
    pixels = hist.sum() / m * 256           # one latent per channel per 16x16 pixels
    print(f"{name}: {int((lo > lo_now).sum())} channels get a higher scale floor "
          f"(max {lo.max()}); training-crop rate {before / pixels:.4f} -> {after / pixels:.4f} bpp (y only, "
          f"averaged over qualities {QUALITIES[0]}..{QUALITIES[-1]}, refs off and on)")
    if write:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        state = load_file(str(path))
        lo_all = state["hyper.out.lo"].clone()
        lo_all[m:] = torch.from_numpy(lo).float()
        state["hyper.out.lo"] = lo_all
        save_file(state, str(path) + ".tmp", metadata={**meta, "scale_floors": "calibrated"})
        os.replace(str(path) + ".tmp", path)
    return lo


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=sorted(CHANNELS))
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--count", type=int, default=192, help="training images to calibrate on")
    ap.add_argument("--dry-run", action="store_true", help="report only, leave the checkpoint alone")
    ap.add_argument("--weights", help="checkpoint to calibrate in place (one name only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    for name in args.names:
        calibrate(name, args.data, args.count, write=not args.dry_run, weights=args.weights)


if __name__ == "__main__":
    main()
