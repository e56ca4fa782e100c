"""Same-position libraries: does a library of earlier frames of the same rover position buy more
than one of another position's frames, or the shipped library (other sols)?

    python -m scripts.bench_site_libraries [--sites ../shared/data/sites] [--frames 4] [--out R.json]

For each val position with at least 7 frames (sites/index.csv, time order): a library of its first
half (remac-lib build), then up to --frames of its second half coded at q 20 / 50 / 80 four ways:
no references, and references always kept (keep_refs) from the same position's library, from the
next position's library, from the shipped library. Decoded with that library (1 thread), PSNR on
the 8-bit grey frame. Prints mean bytes / PSNR per way and quality and each way's BD-rate against
no references (bjontegaard, pchip).
"""
import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.metrics import psnr
from remac.ground_decoder import api as ground
from remac.rover_encoder import api as rover
from remac.rover_encoder.library_build import build

QUALITIES = (20, 50, 80)
WAYS = ("none", "same", "other", "shipped")


def positions(sites: Path, min_frames: int = 7) -> dict:
    """{position: [frame paths in time order]} of sites/val's positions with >= min_frames frames."""
    rows = sorted((r for r in csv.DictReader(open(sites / "index.csv")) if r["split"] == "val"),
                  key=lambda r: int(r["sclk"]))
    found = {}
    for r in rows:
        found.setdefault(r["site"], []).append(sites / r["path"])
    return {k: v for k, v in sorted(found.items()) if len(v) >= min_frames}


def measure(frames: dict, libs: dict, per_position: int, log=print) -> list:
    """-> one record per (frame, quality, way): bytes and PSNR."""
    names = list(frames)
    records = []
    for k, site in enumerate(names):
        other = names[(k + 1) % len(names)]
        ways = {"none": dict(use_refs=False), "same": dict(library=str(libs[site]), keep_refs=True),
                "other": dict(library=str(libs[other]), keep_refs=True), "shipped": dict(keep_refs=True)}
        for path in frames[site][len(frames[site]) // 2:][:per_position]:
            x = np.asarray(Image.open(path).convert("L"))
            for q in QUALITIES:
                for way, kw in ways.items():
                    data = rover.encode(x, q, **kw)
                    y = ground.decode(data, library=kw.get("library"), threads=1)
                    records.append({"position": site, "frame": path.name, "q": q, "way": way,
                                    "bytes": len(data), "psnr": float(psnr(x, y))})
            log(f"{site} {path.name}")
    return records


def summary(records: list) -> dict:
    """-> {way: {"points": [(mean bytes, mean PSNR) per quality], "bd_vs_none": % or None}}."""
    import bjontegaard as bd
    out = {}
    for way in WAYS:
        pts = [(np.mean([r["bytes"] for r in records if r["way"] == way and r["q"] == q]),
                np.mean([r["psnr"] for r in records if r["way"] == way and r["q"] == q])) for q in QUALITIES]
        out[way] = {"points": pts}
    base = out["none"]["points"]
    for way in WAYS[1:]:
        pts = out[way]["points"]
        out[way]["bd_vs_none"] = float(bd.bd_rate([b for b, _ in base], [p for _, p in base],
                                                  [b for b, _ in pts], [p for _, p in pts], method="pchip"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "sites")
    ap.add_argument("--frames", type=int, default=4, help="frames coded per position (from its second half)")
    ap.add_argument("--out", type=Path, help="also write the records and summary here as JSON")
    args = ap.parse_args(argv)
    frames = positions(args.sites)
    with tempfile.TemporaryDirectory() as tmp:
        libs = {}
        for site, paths in frames.items():
            libs[site] = Path(tmp) / site
            build([str(p) for p in paths[:len(paths) // 2]], libs[site])
        records = measure(frames, libs, args.frames)
    result = summary(records)
    for way, s in result.items():
        pts = "; ".join(f"{b:.0f} B / {p:.2f} dB" for b, p in s["points"])
        bd = f", BD-rate vs none {s['bd_vs_none']:+.2f} %" if "bd_vs_none" in s else ""
        print(f"{way:8s} {pts}{bd}")
    if args.out:
        args.out.write_text(json.dumps({"records": records, "summary": result}, indent=1))


if __name__ == "__main__":
    main()
