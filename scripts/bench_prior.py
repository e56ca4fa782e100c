"""Re-imaged scenes (issue 31, item 2): bytes and PSNR of a frame coded given an earlier stream of
the same pointing (remac-encode --prior) against the frame coded on its own, with the rover's cost.

    python -m scripts.bench_prior                       # all three parts below, default settings
    python -m scripts.bench_prior --part synthetic -q 20 -q 50 -q 80
    python -m scripts.bench_prior --part synthetic --colour      # val/color crops (RGB)
    python -m scripts.bench_prior --part sites --part unrelated --part cost

synthetic: each val/gray_native frame's centre crop (--size, 512, at most the frame less 32 px) is the earlier frame; the new one is
    the same scene moved by a random shift of up to 16 px each way, a gain of 0.9 .. 1.1, fresh
    Gaussian noise of sigma 1 .. 2 DN and a JPEG re-encode at quality 90 (Pillow) (seeded). Both
    frames are coded at the same quality; the table gives bytes and PSNR (against the new frame)
    without and with the prior at each quality, and the BD-rate (PSNR) per frame and of the mean curve.
unrelated: each crop given the next frame's crop as its prior: the bytes added (the encoder writes the
    smaller stream, so 0) and the repeat test's score.
sites: the frames of ../shared/data/sites/val, each tested against the (up to) four frames before it
    at its rover position (the repeat test on block means); those that repeat an earlier pointing are
    coded given it, at each quality (where none does, the --top most similar pairs are).
cost: the rover's time for one whole frame (the second val/gray_native frame re-imaged), by step.

Streams "without" are what remac-encode writes by default (shipped library, a reference kept where
it pays); streams "with" are remac-encode --prior's. PSNR from the ground decoder (1 thread).
Rover time: one process, 1 thread, excluding imports and model loading.
"""
import argparse
import csv
import glob
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

from evaluation.metrics import psnr
from evaluation.rd import bd_rate
from remac.bitstream import container, library as lib
from remac.bitstream.spec import quality_steps
from remac.ground_decoder.decode import decode
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import from_pil
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.prior import estimate_shift, encode_with_prior, prior_streams
from remac.rover_encoder.analysis import rover_model

QUALITIES = (20, 35, 50, 65, 80)


def crop(path: str, size: int) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("L"))
    h, w = (min(size or side, side) for side in a.shape)
    top, left = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return a[top:top + h, left:left + w]


def reimaged(path: str, size: int, rng, mode: str = "L") -> tuple:
    """-> (earlier frame, new frame, (sy, sx, gain, sigma)): see the module doc."""
    a = np.asarray(Image.open(path).convert(mode)).astype(np.float64)
    h, w = (min(size or side, side - 32) for side in a.shape[:2])     # 16 px of margin each way
    top, left = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    sy, sx = (int(v) for v in rng.integers(-16, 17, 2))
    gain, sigma = rng.uniform(0.9, 1.1), rng.uniform(1.0, 2.0)
    earlier = a[top:top + h, left:left + w]
    new = a[top + sy:top + sy + h, left + sx:left + sx + w] * gain + rng.normal(0, sigma, earlier.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.floor(new + 0.5), 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    new = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(mode))
    return earlier.astype(np.uint8), new, (sy, sx, gain, sigma)


def source(a: np.ndarray, name: str = "image"):
    return from_pil(Image.fromarray(a), name)


def code_pair(earlier: np.ndarray, new: np.ndarray, q: float, opts_kw: dict) -> dict:
    opts = EncodeOptions(quality_steps(q), **opts_kw)
    prior = encode(source(earlier), opts).data
    t = time.perf_counter()
    alone = encode(source(new), opts)
    t_alone = time.perf_counter() - t
    t = time.perf_counter()
    given = encode_with_prior(source(new), [prior], opts)
    t_given = time.perf_counter() - t
    out = {"q": q, "alone": len(alone.data), "given": len(given.data), "prior": len(prior),
           "ms_alone": 1000 * t_alone, "ms_given": 1000 * t_given, "header": given.header,
           "psnr_alone": psnr(new, decode(alone.data, threads=1).image)}
    out["psnr_given"] = out["psnr_alone"] if given.data == alone.data else \
        psnr(new, decode(given.data, threads=1, priors=[prior]).image)
    return out


def curve(rows, kind, pixels):
    return [(8 * r[kind] / pixels, r[f"psnr_{kind}"], float("nan")) for r in rows]


def synthetic(args, opts_kw):
    rng = np.random.default_rng(args.seed)
    folder = "color" if args.colour else "gray_native"
    frames = sorted(glob.glob(str(DATA / "val" / folder / "*.png")))[:args.frames]
    print(f"\n### Synthetic re-imaged frames ({args.size or 'whole'}² crops of val/{folder})\n")
    print("| frame | shift, gain, sigma | " + " | ".join(f"q{q:g}: bytes alone → given (PSNR alone / given)" for q in args.q)
          + " | BD-rate |")
    print("|---|---|" + "---|" * len(args.q) + "---|")
    mean = {q: [] for q in args.q}
    times = []
    for path in frames:
        earlier, new, (sy, sx, gain, sigma) = reimaged(path, args.size, rng, "RGB" if args.colour else "L")
        rows = [code_pair(earlier, new, q, opts_kw) for q in args.q]
        pixels = new.shape[0] * new.shape[1]
        for r in rows:
            r["pixels"] = pixels
            mean[r["q"]].append(r)
            times.append((r["ms_alone"], r["ms_given"]))
        bd = bd_rate(curve(rows, "alone", pixels), curve(rows, "given", pixels))
        cells = [f"{r['alone']} → {r['given']} ({r['psnr_alone']:.2f} / {r['psnr_given']:.2f})" for r in rows]
        print(f"| {Path(path).stem} | {sy:+d},{sx:+d} px, ×{gain:.3f}, σ {sigma:.2f} | " + " | ".join(cells)
              + f" | {'n/a' if bd is None else f'{bd:+.1f} %'} |", flush=True)
    avg = lambda kind: [(float(np.mean([8 * r[kind] / r["pixels"] for r in mean[q]])),
                         float(np.mean([r[f"psnr_{kind}"] for r in mean[q]])), float("nan")) for q in args.q]
    a, g = avg("alone"), avg("given")
    cells = [f"{x[0]:.4f} → {y[0]:.4f} bpp ({x[1]:.2f} / {y[1]:.2f}), {100 * (y[0] / x[0] - 1):+.0f} %" for x, y in zip(a, g)]
    bd = bd_rate(a, g)
    print("| **mean** | | " + " | ".join(cells) + f" | **{'n/a' if bd is None else f'{bd:+.1f} %'}** |")
    print(f"\nrover ms per frame (mean over frames and qualities): alone {np.mean([t[0] for t in times]):.0f}, "
          f"given the prior {np.mean([t[1] for t in times]):.0f} (includes re-reading the prior, the shift search, "
          f"the frame coded alone to compare, and the steps tried)")


def unrelated(args, opts_kw):
    frames = sorted(glob.glob(str(DATA / "val" / "gray_native" / "*.png")))[:args.frames]
    print(f"\n### Unrelated frames ({args.size}² crops): frame k given frame k+1 as its prior\n")
    print("| frame | prior | q | correlation means / detail (overlap) | bytes alone | bytes given | added |")
    print("|---|---|---|---|---|---|---|")
    added = []
    for k, path in enumerate(frames):
        other = frames[(k + 1) % len(frames)]
        new, earlier = crop(path, args.size), crop(other, args.size)
        for q in args.q[::2]:
            opts = EncodeOptions(quality_steps(q), **opts_kw)
            prior = encode(source(earlier), opts).data
            _, latents, _ = prior_streams([prior], rover_model(1), opts_kw["library"])
            match = estimate_shift(new.astype(np.float64), latents[0].p16[0])
            alone = len(encode(source(new), opts).data)
            given = len(encode_with_prior(source(new), [prior], opts).data)
            added.append(given / alone - 1)
            print(f"| {Path(path).stem} | {Path(other).stem} | {q:g} | {match.score:.3f} / {match.detail:.3f} "
                  f"({match.overlap:.2f}) | "
                  f"{alone} | {given} | {100 * (given / alone - 1):+.2f} % |", flush=True)
    print(f"\nmean added: {100 * np.mean(added):+.3f} %, worst {100 * np.max(added):+.3f} %")


def sites(args, opts_kw):
    root = DATA / "sites"
    with open(root / "index.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    by_site = {}
    for r in rows:
        by_site.setdefault(r["site"], []).append(r["path"])
    model = rover_model(1)
    q0 = args.q[len(args.q) // 2]
    opts0 = EncodeOptions(quality_steps(q0), **opts_kw)
    found, scores, tested = [], [], 0
    t_test = []
    for site, paths in sorted(by_site.items()):
        paths = sorted(paths)
        streams = {}
        for k, p in enumerate(paths):
            new = np.asarray(Image.open(root / p).convert("L"))
            best = None
            for j in range(max(0, k - 4), k):
                if j not in streams:
                    earlier = np.asarray(Image.open(root / paths[j]).convert("L"))
                    data = encode(source(earlier), opts0).data
                    streams[j] = (data, prior_streams([data], model, opts_kw["library"])[1])
                t = time.perf_counter()
                match = estimate_shift(new.astype(np.float64), streams[j][1][0].p16[0])
                t_test.append(time.perf_counter() - t)
                if best is None or match.detail > best[1].detail:
                    best = (j, match)
            if best is None:
                continue
            tested += 1
            scores.append(best[1].detail)
            found.append((site, paths[best[0]], p, best[1]))
    repeats = [f for f in found if f[3].repeats]
    print(f"\n### Real repeats: sites/val ({len(rows)} frames, {len(by_site)} positions)\n")
    print(f"{tested} frames tested against up to 4 earlier frames of their position (repeat test at q{q0:g}: "
          f"block-detail correlation >= 0.97, overlap >= 25 %, mean {1000 * np.mean(t_test):.1f} ms per test); "
          f"{len(repeats)} repeat ({100 * len(repeats) / max(tested, 1):.1f} %); detail correlation quantiles "
          f"50/90/99 %/max: " + ", ".join(f"{np.quantile(scores, v):.3f}" for v in (0.5, 0.9, 0.99, 1.0)) + "\n")
    found.sort(key=lambda f: -f[3].detail)
    shown = repeats or found[:args.top]
    print(("Frames that repeat, coded given the earlier frame:" if repeats else
           f"None repeats; the {len(shown)} most similar pairs, coded given the earlier frame anyway:") + "\n")
    print("| position | earlier → new | shift, correlation means / detail | " + " | ".join(
        f"q{q:g}: bytes alone → given (PSNR alone / given)" for q in args.q) + " | BD-rate |")
    print("|---|---|---|" + "---|" * len(args.q) + "---|")
    for site, before, after, match in shown:
        earlier = np.asarray(Image.open(root / before).convert("L"))
        new = np.asarray(Image.open(root / after).convert("L"))
        rows = [code_pair(earlier, new, q, opts_kw) for q in args.q]
        bd = bd_rate(curve(rows, "alone", new.size), curve(rows, "given", new.size))
        cells = [f"{r['alone']} → {r['given']} ({r['psnr_alone']:.2f} / {r['psnr_given']:.2f})" for r in rows]
        name = lambda p: Path(p).stem.split("_")[0]
        print(f"| {site} | {name(before)} → {name(after)} | {match.shift[0]:+d},{match.shift[1]:+d} px, "
              f"{match.score:.3f} / {match.detail:.3f} | " + " | ".join(cells) + f" | {'n/a' if bd is None else f'{bd:+.1f} %'} |",
              flush=True)


def cost(args, opts_kw):
    """Rover time for a whole frame (the first val/gray_native frame, re-imaged as in `synthetic`)."""
    from remac.rover_encoder import prior as rover_prior
    path = sorted(glob.glob(str(DATA / "val" / "gray_native" / "*.png")))[1]
    earlier, new, _ = reimaged(path, 0, np.random.default_rng(args.seed))
    q = 50
    opts = EncodeOptions(quality_steps(q), **opts_kw)
    prior = encode(source(earlier), opts).data
    runs = {}
    for name, fn in (("alone", lambda: encode(source(new), opts)),
                     ("re-read the prior", lambda: prior_streams([prior], rover_model(1), opts_kw["library"])),
                     ("shift search", lambda: estimate_shift(new.astype(np.float64), prior_streams(
                         [prior], rover_model(1), opts_kw["library"])[1][0].p16[0])),
                     ("given the prior, all", lambda: encode_with_prior(source(new), [prior], opts))):
        times = []
        for _ in range(2):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        runs[name] = (1000 * min(times), out)
    runs["shift search"] = (runs["shift search"][0] - runs["re-read the prior"][0], runs["shift search"][1])
    from remac.bitstream import latent
    codings, real = [], latent.encode
    latent.encode = lambda *a, **k: codings.append(1) or real(*a, **k)     # count the tile codings
    try:
        encode_with_prior(source(new), [prior], opts)
    finally:
        latent.encode = real
    given = runs["given the prior, all"][1]
    print(f"\n### Rover cost: {Path(path).stem} ({new.shape[1]}x{new.shape[0]}), q{q}\n")
    print("| step | ms (1 thread, best of 2) |\n|---|---|")
    for name, (ms, _) in runs.items():
        print(f"| {name} | {ms:.0f} |")
    print(f"\nbytes alone {len(runs['alone'][1].data)}, given {len(given.data)}; tiles predicted "
          f"{sum(1 for t in given.header.prior_tiles if t)} of {len(given.header.prior_tiles)}; steps tried per "
          f"predicted tile: a local search from {rover_prior.FIRST_STEP} (then the tile before's best) by {', '.join(map(str, rover_prior.SEARCH))}, "
          f"plus the tile alone: {len(codings)} tile codings in all, {runs['alone'][1].header.tile_count} of them "
          f"the frame alone to compare (the frame alone: {runs['alone'][1].header.tile_count})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", action="append", choices=["synthetic", "unrelated", "sites", "cost"])
    ap.add_argument("-q", type=float, action="append", help=f"qualities [{', '.join(map(str, QUALITIES))}]")
    ap.add_argument("--size", type=int, default=512, help="crop side of the val/gray_native frames (0: whole)")
    ap.add_argument("--frames", type=int, default=8, help="val/gray_native frames used")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--colour", action="store_true", help="synthetic: val/color crops, RGB (luma + chroma planes)")
    ap.add_argument("--top", type=int, default=4, help="sites: pairs coded when none repeats")
    args = ap.parse_args()
    args.q = args.q or list(QUALITIES)
    opts_kw = {"library": lib.load(), "threads": 1}
    for part in args.part or ["synthetic", "unrelated", "sites", "cost"]:
        {"synthetic": synthetic, "unrelated": unrelated, "sites": sites, "cost": cost}[part](args, opts_kw)


if __name__ == "__main__":
    main()
