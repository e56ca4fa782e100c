"""remac-eval: rate-distortion and complexity of REMAC against the codecs a mission would use."""
import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np
from PIL import Image

from remac.bitstream import library as lib
from remac.rover_encoder.cli_support import Command, version_option
from remac.bitstream.errors import RemacError
from evaluation import rd

SLOW_AVIF = "AVIF s2"       # evaluation.codecs.AVIF(speed=2)


def load_images(dirs, limit=None):
    """-> {'<dir> grey': {name: (H,W) uint8}, '<dir> colour': {name: (H,W,3) uint8}}, one set per
    directory and modality; identical-channel RGB counts as grey."""
    sets = {}
    for d in dirs:
        files = sorted(p for p in Path(d).iterdir() if p.is_file())
        for p in files[:limit] if limit else files:
            try:
                im = Image.open(p)
                im.load()
            except (OSError, ValueError):
                continue
            a = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
            if a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
                a = a[..., 0].copy()
            key = f"{Path(d).name} {'grey' if a.ndim == 2 else 'colour'}"
            sets.setdefault(key, {})[f"{Path(d).name}/{p.name}"] = a
    return sets


def read_records(path: Path):
    with open(path, newline="") as f:
        return [rd.Record(r["codec"], float(r["setting"]), r["image"], int(r["channels"]), int(r["bytes"]),
                          float(r["bpp"]), float(r["psnr"]), float(r["msssim"])) for r in csv.DictReader(f)]


def plot(curves: dict, title: str, path: Path, metric=1):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for name, pts in curves.items():
        style = "-o" if name.startswith("REMAC") else "--."
        ax.plot([p[0] for p in pts], [p[metric] for p in pts], style, label=name, markersize=4)
    ax.set_xlabel("bits per pixel (real file bytes)")
    ax.set_ylabel("PSNR (dB)" if metric == 1 else "MS-SSIM")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command(cls=Command)
@click.argument("image_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--ref-lib", type=click.Path(), help="Reference library [default: shipped].")
@click.option("--out", "out_dir", default="results", show_default=True, type=click.Path())
@click.option("--codecs", default="all", show_default=True,
              help="Comma list of codecs to run (REMAC,JPEG,JPEG 2000,WebP,AVIF,AVIF s2,JPEG XL,ICER,ICER 1seg) or 'all'.")
@click.option("--reuse", type=click.Path(exists=True, file_okay=False),
              help="Merge records of codecs not run now from an earlier --out directory.")
@click.option("--ref-experiments", is_flag=True,
              help="Also REMAC with refs always kept / off / a random / the worst reference.")
@click.option("--encoder-experiment", is_flag=True,
              help="Also REMAC with the rover analysis (int8 / float) that is not the modality's default.")
@click.option("--limit", type=int, help="At most N images per directory.")
@click.option("--qualities", default=",".join(map(str, rd.REMAC_QUALITIES)), show_default=True)
@version_option("remac-eval")
def main(image_dirs, ref_lib, out_dir, codecs, reuse, ref_experiments, encoder_experiment, limit, qualities):
    """Measure REMAC and baselines on IMAGE_DIRS: bpp from real bytes, PSNR, MS-SSIM.

    \b
    Writes OUT/records.csv (every codec x setting x image), OUT/summary.json (curves and
    BD-rates vs JPEG 2000, per set) and OUT/rd_<set>.png. Grey and colour are separate sets.
    \b
    Example:
      remac-eval ../shared/data/val/gray --out results/ --ref-experiments
    \b
    PSNR and MS-SSIM use the samples' true peak (2^D - 1; the sets read here are 8-bit).
    Exit status: 0 done, 1 error (one line on stderr), 2 usage.
    """
    from tqdm import tqdm
    from evaluation import codecs as baselines
    try:
        library = lib.load(ref_lib)
    except RemacError as exc:
        click.echo(f"remac-eval: error: {exc}", err=True)
        sys.exit(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qs = [int(q) for q in qualities.split(",")]
    wanted = None if codecs == "all" else {c.strip() for c in codecs.split(",")}
    contenders = []
    if wanted is None or "REMAC" in wanted:
        contenders.append(rd.RemacCodec(library, "best", qs))
        if ref_experiments:
            contenders += [rd.RemacCodec(library, mode, qs) for mode in ("kept", "off", "random", "worst")]
        if encoder_experiment:
            contenders += [rd.RemacCodec(library, "best", qs, precision=p) for p in ("int8", "float")]
    contenders += [c for c in baselines.available() if wanted is None or c.name in wanted]
    reused = read_records(Path(reuse) / "records.csv") if reuse else []
    reused = [r for r in reused if r.codec not in {c.name for c in contenders}]
    sets = load_images(image_dirs, limit)
    records, summary = [], {}
    for set_name, images in sets.items():
        if not images:
            continue
        channels = 1 if set_name.endswith("grey") else 3
        active = [c for c in contenders if c.supports(channels)]
        total = sum(len(c.settings) for c in active) * len(images)
        with tqdm(total=total, desc=f"remac-eval {set_name}", unit="enc", file=sys.stderr) as bar:
            set_records = [r for c in active for r in rd.measure(c, images, bar.update)]
        set_records += [r for r in reused if r.image in images]
        records += set_records
        curves = {name: rd.curve(set_records, name) for name in dict.fromkeys(r.codec for r in set_records)}
        anchor = curves.get("JPEG 2000")
        summary[set_name] = {
            "images": len(images),
            "curves": curves,
            "bd_rate_psnr_vs_jpeg2000": {n: rd.bd_rate(anchor, c) for n, c in curves.items()} if anchor else {},
            "bd_rate_msssim_vs_jpeg2000": {n: rd.bd_rate(anchor, c, 2) for n, c in curves.items()} if anchor else {},
        }
        if SLOW_AVIF in curves:     # the slow preset a downlink would use: each REMAC curve against it
            summary[set_name]["bd_rate_psnr_vs_avif_s2"] = {n: rd.bd_rate(curves[SLOW_AVIF], c)
                                                            for n, c in curves.items() if n.startswith("REMAC")}
        if "REMAC refs=off" in curves:
            summary[set_name]["bd_rate_refs_on_vs_off"] = rd.bd_rate(curves["REMAC refs=off"], curves["REMAC"])
            if "REMAC refs=kept" in curves:     # the references alone, without the rover's fallback
                summary[set_name]["bd_rate_refs_kept_vs_off"] = rd.bd_rate(curves["REMAC refs=off"],
                                                                           curves["REMAC refs=kept"])
        if encoder_experiment and "REMAC" in curves:     # the default analysis is plain "REMAC"
            by = {p: curves.get(f"REMAC encoder={p}", curves["REMAC"]) for p in ("int8", "float")}
            summary[set_name]["bd_rate_int8_vs_float"] = rd.bd_rate(by["float"], by["int8"])
        plot(curves, f"{set_name}: {len(images)} images", out / f"rd_{set_name.replace(' ', '_')}.png")
    with open(out / "records.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(records[0]).keys()) if records else ["codec"])
        w.writeheader()
        w.writerows(asdict(r) for r in records)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for set_name, s in summary.items():
        click.echo(f"{set_name} ({s['images']} images): BD-rate vs JPEG 2000 (PSNR)")
        for name, v in s.get("bd_rate_psnr_vs_jpeg2000", {}).items():
            click.echo(f"  {name:20s} {'n/a' if v is None else f'{v:+.1f}%'}")
        for name, v in s.get("bd_rate_psnr_vs_avif_s2", {}).items():
            click.echo(f"  {name:20s} {'n/a' if v is None else f'{v:+.1f}%'} vs {SLOW_AVIF}")


if __name__ == "__main__":
    main()
