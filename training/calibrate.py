"""Per-channel scale-index floors, chosen by the real coder's bit count on training crops.

Training prices latents with the uniform-noise proxy, which under-prices a latent at 0.5..1 from
its predicted mean when the predicted scale is tiny: rounding sends it to +-1, which the coder pays
~17 bits for (count 1 of 2^16). The first grey model predicted the smallest scale for two whole
channels that are non-zero half the time (about 0.04 bpp of such symbols at quality 5).

Each channel c gets a scale-index floor k minimising the exact table cost on training crops,
from the network's indices without any floor (`choose_floors`, --floors):

    pooled (the older releases' rule): one floor for all qualities, never below the
            checkpoint's: bits_c(k) = sum over (crop, quality, position) of cost[max(idx, k), s]
    banded: one floor per quality band b, the optimum at QUALITIES[b] alone
            (entropy.npz floors/idx, floors/edges, applied on both sides by bitstream.latent)
    low:    banded up to quality LOW_BANDS_UP_TO, pooled above
    split (the default):  banded, and the chroma planes (Cb, Cr of colour training images, 4:2:0, as the rover
            codes them) get their own banded floors (entropy.npz floors/chroma); floors and tables
            are fitted in SPLIT_ROUNDS alternations, each floor choice priced with the tables
            fitted last (split_floors)

(cost = -log2 of the integer table count, escapes included). The pooled floor is dominated by the
high qualities' bits: at quality 0 it makes the almost always zero channels cost 22 % more y rate
than their own optimum (10 % at quality 10, 3 % at 40-55), but with the tables fitted over all
qualities the banded and low rules lost at the middle qualities on val/color (+1.8 % BD-rate):
the chroma planes, absent from the calibration, share the luma floors, and on held-out chroma
planes the banded luma floors cost +17..+52 % y rate at qualities 40-85. The split rule fixes
that: on held-out crops -28 % (luma) / -51 % (chroma) y rate at quality
0, -1 % / -7 % at 100. Banded and low set the network's own clip to the lowest
band's floors, so a later pooled calibration starts from those. Only probabilities change, never
the symbols, so reconstruction is untouched; rover and ground read the floors from the same
integer arrays.

Second step, the tables themselves: the Gaussian table of scale index t is what the
noise proxy assumes; the symbols the coder actually sees at index t (pooled over channels, floors
applied) are not Gaussian. `fit_tables` re-estimates each index's counts from their histogram,
shrunk towards the Gaussian (K pseudo-symbols) so rare indices keep it, on the same support and
escape; each z channel's table (from the learned prior) is re-fitted the same way. The fitted counts go into the checkpoint as `coder.y_counts` / `coder.z_counts` (export ships them; the
training forward ignores them, and a later training run drops them, as it should: they describe
one set of weights). Gains are reported on held-out training crops.

`python -m training.calibrate grey` rewrites hyper.out.lo, coder.y_counts (and the floors) in
models/weights/<name>.safetensors; export afterwards.
"""
import argparse
import os

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from remac.bitstream import spatial as bitstream_spatial
from remac.bitstream import spec
from remac.bitstream.entropy import quantize_pmf
from training.data import load_set, train_folders
from remac.models.codec import CHANNELS, checkpoint_path, load_model
from training.export import y_tables, z_tables
from remac.models.intnet import round_half_up
from training import DATA

QUALITIES = (0, 10, 25, 40, 55, 70, 85, 100)
# quality bands of the floors, in hundredths: band b holds the qualities nearest QUALITIES[b]
FLOOR_EDGES = tuple((a + b) * 50 for a, b in zip(QUALITIES, QUALITIES[1:]))
LOW_BANDS_UP_TO = 10    # "low" rule: the bands of these qualities get their own floors
S_RANGE = 600           # |s| beyond this is counted as an escape at every scale (rare)
SPLIT_ROUNDS = 3        # "split" rule: alternations of floor choice and table fit


def table_cost(tables, origin: int) -> np.ndarray:
    """(T, 2*origin+1) bits of coding value v = column - origin with table t of tables = (counts,
    offsets, sizes), escapes (+16 raw bits) included."""
    counts, offsets, sizes = tables
    v = np.arange(-origin, origin + 1)
    cost = np.empty((len(sizes), len(v)))
    for t in range(len(sizes)):
        rel = v - offsets[t]
        inside = (rel >= 0) & (rel < sizes[t])
        p = np.where(inside, counts[t, np.clip(rel, 0, sizes[t] - 1)], counts[t, sizes[t]])
        cost[t] = -np.log2(p / 2 ** spec.PROB_BITS) + 16 * ~inside
    return cost


def cost_matrix(counts=None):
    """(T, 2R+1) bits of coding y symbol s in [-R, R] with scale table t. counts: (T, L) table
    counts on the Gaussian tables' support (default: the Gaussian tables)."""
    return table_cost(y_tables(counts), S_RANGE)


@torch.no_grad()
def histogram(model, images: torch.Tensor, qualities=QUALITIES, batch=16) -> tuple:
    """-> (H (Q, M, T, 2R+1): how often channel c got scale index t and symbol s at each quality
    (refs off and on), Hz (Z, 2*Z_CLIP+1): how often hyper-latent channel c took each value,
    Hs (Q, 2, CLASSES, T, 2R+1) or None: a spatial model's channel 0 at passes 1 and 2 by
    neighbour class, with the hyperprior's scale index (those symbols are not in H))."""
    m, t_levels = model.m, spec.SCALE_LEVELS
    hist = np.zeros((len(qualities), m, t_levels, 2 * S_RANGE + 1))
    hist_z = np.zeros((model.nz, 2 * spec.Z_CLIP + 1))
    hist_s = np.zeros((len(qualities), 2, bitstream_spatial.CLASSES, t_levels, 2 * S_RANGE + 1)) \
        if model.hyper.has_spatial else None
    for start in range(0, len(images), batch):
        x = images[start:start + batch].float() / 255
        y, _ = model.encoder.analysis(x)
        ref_y, _ = model.encoder.analysis(x.roll(1, 0))
        for qi, q in enumerate(qualities):
            y_g, z, g_int, _ = model.gained_latents(y, torch.full((len(x),), float(q)))
            z_hat = round_half_up(z).clamp(-spec.Z_CLIP, spec.Z_CLIP)
            zc = torch.arange(model.nz)[None, :, None, None].expand_as(z_hat)
            flat_z = zc * (2 * spec.Z_CLIP + 1) + z_hat.long() + spec.Z_CLIP
            hist_z += np.bincount(flat_z.flatten().numpy(), minlength=hist_z.size).reshape(hist_z.shape)
            for on in (False, True):
                r = model.ref_vector(model.latent_stats16(ref_y), g_int, torch.full((len(x),), on))
                mu16, idx, which, cls = model.hyper.params(z_hat, r, y_g, passes=True)
                s = torch.floor(y_g - mu16 / 2 ** spec.MEAN_FRAC_BITS + 0.5).clamp(-S_RANGE, S_RANGE)
                ch = torch.arange(m)[None, :, None, None].expand_as(s)
                flat = (ch * t_levels + idx.long()) * (2 * S_RANGE + 1) + (s.long() + S_RANGE)
                later = torch.zeros_like(flat, dtype=torch.bool)
                if hist_s is not None:      # channel 0 at passes 1, 2: by pass and class, not in H
                    c0 = bitstream_spatial.CHANNEL
                    later[:, c0] = which > 0
                    unit = ((which - 1) * bitstream_spatial.CLASSES + cls) * t_levels + idx[:, c0].long()
                    flat_s = unit * (2 * S_RANGE + 1) + s[:, c0].long() + S_RANGE
                    hist_s[qi] += np.bincount(flat_s[(which > 0).expand_as(cls)].numpy(),
                                              minlength=hist_s[qi].size).reshape(hist_s[qi].shape)
                hist[qi] += np.bincount(flat[~later].numpy(), minlength=hist[qi].size).reshape(hist[qi].shape)
    return hist, hist_z, hist_s


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


def floored(hist: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """hist (M, T, S) with each channel's rows below its floor lo_c merged into row lo_c."""
    out = hist.copy()
    for c, k in enumerate(lo):
        out[c, k] += out[c, :k].sum(0)
        out[c, :k] = 0
    return out


def fit_counts(rows: np.ndarray, tables, origin: int, k: float = 256.0) -> np.ndarray:
    """rows (T, 2*origin+1): how often table t coded value column - origin -> counts (T, L): per
    table, the empirical pmf shrunk towards the table's own by k pseudo-symbols, on the table's
    support; values outside it feed the escape. A table with no data is kept as is. Every row sums
    to 2**PROB_BITS with no zero count (any value stays codable)."""
    base, offsets, sizes = tables
    out = np.zeros_like(base)
    for t in range(len(sizes)):
        n, total = sizes[t], rows[t].sum()
        if total == 0:
            out[t] = base[t]
            continue
        start = offsets[t] + origin                       # value offsets[t] sits at this column
        assert 0 <= start and start + n <= rows.shape[1], "table support wider than the histogram"
        inside = rows[t, start:start + n]
        prior = base[t, :n + 1] / 2 ** spec.PROB_BITS
        p = (np.append(inside, total - inside.sum()) + k * prior) / (total + k)
        out[t, :n + 1] = quantize_pmf(p[:-1], p[-1])
    return out


def fit_tables(hist: np.ndarray, k: float = 256.0) -> np.ndarray:
    """hist (M, T, 2R+1) y symbol counts per scale index (floors applied) -> counts (T, L): one
    table per scale index, fitted to the symbols of all channels at that index (fit_counts)."""
    return fit_counts(hist.sum(0), y_tables(), S_RANGE, k)


def table_bits(hist: np.ndarray, counts=None) -> float:
    """Bits of coding the symbols of hist (M, T, S) with table counts (default: Gaussian)."""
    return float((hist.sum(0) * cost_matrix(counts)).sum())


def band_floors(hist: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """hist (Q, M, T, S), one quality per band -> floors (Q, M) int: each band's own best_floors,
    from no floor at all."""
    zero = np.zeros(hist.shape[1], dtype=np.int64)
    return np.stack([best_floors(h, cost, zero)[0] for h in hist])


def banded(hist: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """hist (Q, M, T, S) -> (M, T, S): each quality's histogram floored by its band's floors, summed."""
    return sum(floored(h, f) for h, f in zip(hist, floors))


FLOOR_MODES = ("pooled", "low", "banded", "split")


def choose_floors(hist: np.ndarray, cost: np.ndarray, lo_before: np.ndarray, mode: str) -> np.ndarray:
    """hist (Q, M, T, S) -> floors (Q, M): "banded" each band's own best_floors; "pooled" one floor
    per channel for every band, best on the bits summed over the qualities and never below the
    floors the checkpoint had (the older releases' rule); "low" the pooled floors except in the
    bands of qualities <= LOW_BANDS_UP_TO, which get their own (measured: on val/color the banded
    floors, fitted on luma crops, cost 3-5 % at q35-65 while saving 17 % at q5)."""
    pooled = best_floors(hist.sum(0), cost, lo_before)[0]
    if mode == "pooled":
        return np.broadcast_to(pooled, hist.shape[:2]).copy()
    own = band_floors(hist, cost)
    if mode == "banded":
        return own
    low = np.array(QUALITIES) <= LOW_BANDS_UP_TO
    return np.where(low[:, None], own, pooled[None])


def chroma_planes(data_dir: str, name: str, count: int) -> torch.Tensor:
    """-> (2N,1,128,128) uint8: the two chroma planes (rover_encoder.planar's transform: each image's
    own, bitstream.colour.fit_transform, and 4:2:0 subsampling) of N colour training images, in a
    fixed random order."""
    from remac.bitstream import colour
    from remac.rover_encoder.planar import CHROMA_SHIFT
    folders = [f for f in train_folders(name) if "color" in f]
    rgb, _ = load_set(data_dir, folders, 3)
    pick = np.random.default_rng(1).permutation(len(rgb))[:count]
    own = lambda x: colour.to_planes(x, CHROMA_SHIFT, colour.fit_transform(x))
    planes = [p for i in pick for p in own(rgb[i].numpy() / 255.0)[1:]]
    return torch.from_numpy(np.round(np.stack(planes)[:, None] * 255).astype(np.uint8))


def shifted_index(t_levels: int, floor: int, delta: int) -> np.ndarray:
    """(T,) the scale index a later-pass position of channel 0 is coded with, for each hyperprior
    index: clip(max(index, floor) + delta) (bitstream.latent)."""
    return np.clip(np.maximum(np.arange(t_levels), floor) + delta, 0, t_levels - 1)


def spatial_deltas(parts, cost: np.ndarray) -> np.ndarray:
    """parts: [(Hs (Q, 2, K, T, S) later-pass symbols, channel-0 floors (Q,))] per plane kind ->
    (Q, 2, K) int: per band, pass and neighbour class, the index shift that codes them in the
    fewest bits with tables `cost` (T, S) (0 where there is nothing to price)."""
    q, passes, k, t_levels, _ = parts[0][0].shape
    shifts, cols = np.arange(-(t_levels - 1), t_levels), np.arange(t_levels)
    out = np.zeros((q, passes, k), np.int64)
    for b in range(q):
        for p in range(passes):
            for c in range(k):
                bits = np.zeros(len(shifts))
                for hist_s, floors in parts:
                    priced = cost @ hist_s[b, p, c].T           # (T new, T hyperprior): bits of each row at each index
                    bits += [priced[shifted_index(t_levels, floors[b], d), cols].sum() for d in shifts]
                if bits.min() < bits[t_levels - 1]:             # shift 0 unless another one pays
                    out[b, p, c] = shifts[int(np.argmin(bits))]
    return out


def spatial_rows(hist_s: np.ndarray, floors: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Later-pass symbols (Q, 2, K, T, S) moved to the indices they are coded with -> (T, S)."""
    q, passes, k, t_levels, _ = hist_s.shape
    rows = np.zeros(hist_s.shape[-2:])
    for b in range(q):
        for p in range(passes):
            for c in range(k):
                np.add.at(rows, shifted_index(t_levels, floors[b], deltas[b, p, c]), hist_s[b, p, c])
    return rows


def split_floors(hist: np.ndarray, hist_c: np.ndarray, rounds: int = SPLIT_ROUNDS, hist_s=None, hist_sc=None) -> tuple:
    """The "split" rule: luma (Q, M, T, S) and chroma-plane histograms -> (luma floors (Q, M),
    chroma floors (Q, M), fitted table counts (T, L), spatial shifts (Q, 2, K) or None). Each plane
    kind gets each band's own floors, priced with the tables fitted to both kinds' floored symbols;
    `rounds` alternations of the two fits (the first prices with the Gaussian tables). A spatial
    model (hist_s, hist_sc: its later-pass histograms, see histogram) also gets the scale-index
    shifts of channel 0's later passes, chosen on both kinds after their floors, in every round."""
    counts, deltas = None, None
    for _ in range(rounds):
        cost = cost_matrix(counts)
        floors, floors_c = band_floors(hist, cost), band_floors(hist_c, cost)
        merged = banded(hist, floors) + banded(hist_c, floors_c)
        if hist_s is not None:
            c0 = bitstream_spatial.CHANNEL
            parts = [(hist_s, floors[:, c0]), (hist_sc, floors_c[:, c0])]
            deltas = spatial_deltas(parts, cost)
            merged = np.concatenate([merged, sum(spatial_rows(h, f, deltas) for h, f in parts)[None]])
        counts = fit_tables(merged)
    return floors, floors_c, counts, deltas


def calibrate(name: str, data_dir: str, count: int = 192, write: bool = True, weights=None, mode: str = "split"):
    """weights: the checkpoint to calibrate (default: the shipped models/weights/<name>.safetensors);
    mode: how the scale-index floors are chosen (choose_floors, or split_floors for "split")."""
    path = weights or checkpoint_path(name)
    model = load_model(name, weights=path)
    images, _ = load_set(data_dir, train_folders(name), CHANNELS[name])
    order = np.random.default_rng(0).permutation(len(images))
    held_out = 64                           # crops kept out of the fit, to report its gain honestly
    pick, check = (torch.from_numpy(order[:min(count, len(images) - held_out)]),
                   torch.from_numpy(order[-held_out:]))
    m = model.m
    lo_before = model.hyper.out.lo[m:].long().numpy().copy()
    model.hyper.out.lo[m:] = 0              # the network's own indices, without any floor
    hist, hist_z, hist_s = histogram(model, images[pick])
    test, test_z, test_s = histogram(model, images[check])
    floors_c = test_c = deltas = None
    if hist_s is not None and mode != "split":
        raise SystemExit(f"{name}: a model with spatial context is calibrated with --floors split only")
    if mode == "split":
        planes = chroma_planes(data_dir, name, count // 2 + held_out // 4)
        hist_c, _, hist_sc = histogram(model, planes[:count])
        test_c, _, _ = histogram(model, planes[count:])
        floors, floors_c, counts, deltas = split_floors(hist, hist_c, hist_s=hist_s, hist_sc=hist_sc)
    else:
        floors = choose_floors(hist, cost_matrix(), lo_before, mode)
        counts = fit_tables(banded(hist, floors))
    prior_z = z_tables(model)
    counts_z = fit_counts(hist_z, prior_z, spec.Z_CLIP)
    # held-out crops, per quality: y bits with the floors it had and Gaussian tables -> new floors, fitted tables
    gauss, fitted = cost_matrix(), cost_matrix(counts)
    bits = lambda h, f, cost: np.array([(floored(q, b).sum(0) * cost).sum() for q, b in zip(h, f)])
    for kind, h, f in (("luma", test, floors), ("chroma", test_c, floors_c)):
        if h is not None:
            before, after = bits(h, [lo_before] * len(h), gauss), bits(h, f, fitted)
            px = h[0].sum() / m * 256 / 2   # one latent per channel per 16x16 pixels; refs off and on
            print(f"{name}: {mode} floors, fitted tables; held-out {kind} y rate at qualities {QUALITIES}: "
                  + ", ".join(f"{a / px:.4f} ({100 * (a / b - 1):+.1f}%)" for a, b in zip(after, before)), flush=True)
    if deltas is not None:     # held-out channel 0 at passes 1, 2: with the chosen shifts vs none
        c0, none = bitstream_spatial.CHANNEL, np.zeros_like(deltas)
        later = [(spatial_rows(test_s[i:i + 1], floors[i:i + 1, c0], d[i:i + 1]) * fitted).sum()
                 for d in (deltas, none) for i in range(len(QUALITIES))]
        n = len(QUALITIES)
        print(f"{name}: spatial shifts (band x pass x class) {deltas.tolist()}; held-out later-pass bits at "
              f"{QUALITIES}: " + ", ".join(f"{100 * (a / b - 1):+.1f}%" for a, b in zip(later[:n], later[n:])))
    z_cost = lambda c: float((test_z * table_cost((c, prior_z[1], prior_z[2]), spec.Z_CLIP)).sum())
    print(f"{name}: z tables fitted: held-out z bits {100 * (z_cost(counts_z) / z_cost(prior_z[0]) - 1):+.1f}%")
    if write:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        state = load_file(str(path))
        lo_all = state["hyper.out.lo"].clone()
        lowest = floors.min(0) if floors_c is None else np.minimum(floors.min(0), floors_c.min(0))
        lo_all[m:] = torch.from_numpy(lowest).float()      # the network's own clip: the lowest floors
        state["hyper.out.lo"] = lo_all
        state["coder.y_counts"] = torch.from_numpy(counts.astype(np.int32))
        state["coder.z_counts"] = torch.from_numpy(counts_z.astype(np.int32))
        for key in ("coder.idx_floors", "coder.floor_edges", "coder.chroma_floors", "coder.spatial_delta"):
            state.pop(key, None)
        if mode != "pooled":        # pooled: the network's own clip is the floor; no floors arrays
            state["coder.idx_floors"] = torch.from_numpy(floors.astype(np.int32))
            state["coder.floor_edges"] = torch.from_numpy(np.array(FLOOR_EDGES, dtype=np.int32))
        if floors_c is not None:
            state["coder.chroma_floors"] = torch.from_numpy(floors_c.astype(np.int32))
        if deltas is not None:
            state["coder.spatial_delta"] = torch.from_numpy(deltas.astype(np.int32))
        save_file(state, str(path) + ".tmp", metadata={**meta, "scale_floors": "calibrated",
                                                        "y_tables": "fitted", "z_tables": "fitted"})
        os.replace(str(path) + ".tmp", path)
    return floors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=sorted(CHANNELS))
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--count", type=int, default=192, help="training images to calibrate on")
    ap.add_argument("--dry-run", action="store_true", help="report only, leave the checkpoint alone")
    ap.add_argument("--weights", help="checkpoint to calibrate in place (one name only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--floors", choices=FLOOR_MODES, default="split", help="scale-floor rule (module doc)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.names:
        calibrate(name, args.data, args.count, write=not args.dry_run, weights=args.weights, mode=args.floors)


if __name__ == "__main__":
    main()
