"""Ground decoding benchmark: determinism across --threads, a large frame's time and peak RSS,
previews (--reduce). Writes the section "Ground decoding: determinism, large frames, previews" of
docs/BENCHMARKS.md.

    python -m scripts.bench_decode                       # this tree -> results/bench_decode/after.json
    python -m scripts.bench_decode --code OLD --label before --det-side 1024 --no-previews
                                                         # another source tree (e.g. `git archive`
                                                         # of an older commit) for comparison
    python -m scripts.bench_decode --report              # the docs section from the saved JSONs

Everything runs the real command lines (remac-encode, remac-decode) in fresh subprocesses of the
chosen source tree; wall time is the whole command (start-up, entropy decoding, synthesis, PNG
writing), peak RSS its ru_maxrss. The test frame (grey, --side px square, default 4096) is a
mosaic of ../shared/data/val/gray_native, upsampled to 1024 px cells; it is generated, never
committed. Determinism: a --det-side crop decoded with --threads 1, 2, 4 and again with 2.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "val" / "gray_native"
OUT = ROOT / "results" / "bench_decode"
DOCS = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Ground decoding: determinism, large frames, previews"
CELL = 1024

RUNNER = """import resource, sys, time
from {module} import {func}
t = time.perf_counter()
try:
    {func}(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print("BENCH", code, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_frame(side: int) -> np.ndarray:
    """side x side grey mosaic of the native-resolution validation frames, each scaled to a CELL
    square (bicubic; upsampling the smaller ones)."""
    paths = sorted(glob.glob(str(DATA / "*.png")))
    if not paths:
        sys.exit(f"no images in {DATA}")
    frame = np.zeros((side, side), np.uint8)
    k = 0
    for top in range(0, side, CELL):
        for left in range(0, side, CELL):
            cell = Image.open(paths[k % len(paths)]).convert("L").resize((CELL, CELL), Image.BICUBIC)
            h, w = min(CELL, side - top), min(CELL, side - left)
            frame[top:top + h, left:left + w] = np.asarray(cell)[:h, :w]
            k += 1
    return frame


def cli(code: Path, module: str, func: str, args) -> dict:
    """Run one command line of source tree `code` in a fresh interpreter: -> exit code, wall s (whole
    process), s inside the command, peak RSS MiB."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", RUNNER.format(module=module, func=func), *map(str, args)],
                       cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    line = [l for l in p.stdout.splitlines() if l.startswith("BENCH")]
    if p.returncode or not line or line[-1].split()[1] != "0":
        sys.exit(f"{module} {args} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    _, _, inner, rss = line[-1].split()
    return {"wall_s": round(wall, 2), "command_s": round(float(inner), 2), "peak_rss_mib": round(int(rss) / 1024, 1)}


def encode(code, png, rmc):
    return cli(code, "remac.rover_encoder.cli", "encode_main", [png, "-o", rmc, "-q", "75", "--threads", "2", "--quiet"])


def decode(code, rmc, png, *extra):
    return cli(code, "remac.ground_decoder.cli", "decode_main", [rmc, "-o", png, "--quiet", *extra])


def psnr(a, b) -> float:
    from evaluation.metrics import psnr as db
    return round(db(np.asarray(a), np.asarray(b)), 2)


def run(args) -> dict:
    code = Path(args.code).resolve()
    from evaluation.report import machine
    res = {"label": args.label, "code": str(code), "side": args.side, "det_side": args.det_side,
           "machine": machine(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frame = make_frame(args.side)
        Image.fromarray(frame).save(tmp / "big.png")
        Image.fromarray(frame[:args.det_side, :args.det_side]).save(tmp / "det.png")

        # determinism: one stream, several --threads, and a repeat
        encode(code, tmp / "det.png", tmp / "det.rmc")
        outs = {}
        for threads in ("1", "2", "4", "2"):
            decode(code, tmp / "det.rmc", tmp / "det.out.png", "--threads", threads)
            outs.setdefault(threads, []).append(np.asarray(Image.open(tmp / "det.out.png")))
        ref = outs["1"][0]
        res["determinism"] = {f"threads {t} run {i + 1}": {"pixels_differing": int((a != ref).sum()),
                                                         "max_diff": int(np.abs(a.astype(int) - ref).max())}
                              for t, runs in outs.items() for i, a in enumerate(runs) if not (t == "1" and i == 0)}

        # the large frame: encode, full decode, previews
        res["encode"] = encode(code, tmp / "big.png", tmp / "big.rmc")
        res["stream_bytes"] = (tmp / "big.rmc").stat().st_size
        res["full"] = decode(code, tmp / "big.rmc", tmp / "big.out.png", "--threads", str(args.threads))
        res["full"]["s_per_mp"] = round(res["full"]["wall_s"] / (args.side ** 2 / 1e6), 2)
        full = np.asarray(Image.open(tmp / "big.out.png"))
        res["full"]["psnr_vs_source"] = psnr(full, frame)
        if not args.no_previews:
            from remac.ground_decoder.decode import box_reduce
            res["previews"] = {}
            for r in (1, 2, 3):
                p = decode(code, tmp / "big.rmc", tmp / f"big.r{r}.png", "--threads", str(args.threads), "--reduce", str(r))
                preview = np.asarray(Image.open(tmp / f"big.r{r}.png"))
                p["psnr_vs_downsampled_full"] = psnr(preview, box_reduce(full[..., None], r)[..., 0])
                p["speedup_wall"] = round(res["full"]["wall_s"] / p["wall_s"], 2)
                res["previews"][r] = p
        if not args.no_previews:           # where a decode's time goes (this tree only)
            res["breakdown"] = breakdown(tmp / "big.rmc", args.threads)
    res["load_after"] = os.getloadavg()[0]
    return res


def breakdown(rmc: Path, threads: int) -> dict:
    """In-process: entropy decoding, then synthesis, full and previews (one run each)."""
    from remac.bitstream import library
    from remac.ground_decoder.decode import entropy_decode, render, synthesis_input
    data, lib = rmc.read_bytes(), library.load()
    t = time.perf_counter()
    entropy_decode(data, lib)
    out = {"entropy_decode_s": round(time.perf_counter() - t, 2)}
    header, gm, y_map, x_ref, _, _ = synthesis_input(data, lib)
    for r in (0, 1, 2, 3):
        t = time.perf_counter()
        render(gm, y_map, header, x_ref, threads, r)
        out[f"synthesis_s_reduce{r}"] = round(time.perf_counter() - t, 2)
    return out


def report() -> list:
    from evaluation.report import saved_runs
    after, before = saved_runs(OUT, "scripts/bench_decode.py")
    side = after["side"]
    lines = [HEADING, "",
             f"Generated by `python -m scripts.bench_decode` (and, for the *before* column, the same script run "
             f"on the previous decoder's source tree, {before['code'] if before else 'OLD'}: "
             f"`--code OLD --label before --det-side 1024 --no-previews`); "
             f"then `python -m scripts.bench_decode --report`. Real `remac-decode` subprocesses, 2 threads, "
             f"grey {side}×{side} mosaic of the native Navcam validation frames at quality 75 "
             f"({after['stream_bytes'] / 1e6:.2f} MB stream). Wall time is the whole command. Machine: "
             f"{after['machine']}; other jobs shared the cores: 1-minute load average "
             + "; ".join(f"{r['label']} run {r['load_before']:.1f} -> {r['load_after']:.1f}" if "load_before" in r
                         else f"{r['label']} run not recorded" for r in (before, after) if r) + ".", "",
             "| remac-decode, %d² grey | before | after |" % side, "|---|---|---|"]
    cell = lambda run, f: f(run) if run else "–"
    rows = [("wall s", lambda r: r["full"]["wall_s"]), ("s / MP", lambda r: r["full"]["s_per_mp"]),
            ("peak RSS MiB", lambda r: r["full"]["peak_rss_mib"]), ("PSNR vs source dB", lambda r: r["full"]["psnr_vs_source"])]
    lines += [f"| {label} | {cell(before, f)} | {cell(after, f)} |" for label, f in rows]
    b = after.get("breakdown", {})
    if b:
        lines += ["", f"In-process (this tree): entropy decoding {b['entropy_decode_s']} s (per tile, serial: a "
                      f"2-thread pool over tiles measured no faster), synthesis {b['synthesis_s_reduce0']} s of the "
                      f"full decode; the rest of the wall time is start-up and writing the PNG."]
    lines += ["", "Determinism: one stream decoded with `--threads 1` (reference), 2, 4 and 2 again — pixels "
                  "differing from the reference (max difference):", "",
              "| run | " + " | ".join(f"{n} ({r['det_side']}² crop)" for n, r in (("before", before), ("after", after)) if r)
              + " |", "|---|" + "---|" * sum(1 for r in (before, after) if r)]
    for key in after["determinism"]:
        vals = [f"{r['determinism'][key]['pixels_differing']} ({r['determinism'][key]['max_diff']})"
                for r in (before, after) if r and key in r["determinism"]]
        lines.append(f"| {key} | " + " | ".join(vals) + " |")
    lines += ["", "How (models/ground.py): the ref-decoder is cut at its pixel shuffles into stages whose "
                  "context needs come from the layer structure (33 latent px in all: 21 for the 1/16 trunk, 12 for "
                  "the upsampling stages, shrinking to 1 px at 1/2 scale); the trunk runs on 128-latent-px tiles "
                  "into one 1/16 feature map, the rest on 96-px tiles (1/4 -> 1 on 48-px quarters), each tile "
                  "cropped to the context still needed after every stage and quantized straight into the output "
                  "image. The tile grid is fixed in latent coordinates, each tile runs with one torch thread and "
                  "`--threads` workers run tiles in parallel, so the pixels cannot depend on the thread count."]
    if "previews" in after:
        lines += ["", "Previews (`--reduce N`, same frame): the 1/16 trunk plus one fitted 3x3 linear head to the "
                      "half-resolution sub-pixels, averaged for 1/4 and 1/8 (training/preview.py, which also "
                      "lists the alternatives measured); PSNR against the full decode box-downsampled N times:", "",
                  "| --reduce | output | wall s | speed-up (wall) | synthesis s | speed-up (synthesis) | peak RSS MiB "
                  "| PSNR vs downsampled full decode dB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r, p in after["previews"].items():
            n = side >> int(r)
            synth = b.get(f"synthesis_s_reduce{r}")
            speedup = f"{b['synthesis_s_reduce0'] / synth:.1f}x" if synth else "–"
            lines.append(f"| {r} | {n}×{n} | {p['wall_s']} | {p['speedup_wall']}x | {synth or '–'} | {speedup} "
                         f"| {p['peak_rss_mib']} | {p['psnr_vs_downsampled_full']} |")
        lines += ["", "Held-out frames (written by `python -m training.preview grey colour` into the heads' "
                      "metadata): PSNR of the preview against the box-downsampled full decode, mean (min) dB:", "",
                  "| model | validation images | 1/2 | 1/4 | 1/8 |", "|---|---|---|---|---|"]
        lines += preview_validation()
    return lines


def preview_validation() -> list:
    from safetensors import safe_open
    from remac.models import ground
    rows = []
    for name in ("grey", "colour"):
        with safe_open(str(ground.preview_weights_path(name)), framework="pt") as f:
            v = json.loads(f.metadata().get("validation", "null") or "null")
        if v:
            folder, count, side = v["set"]
            cells = " | ".join(f"{m} ({lo})" for m, lo in v["psnr_mean_min"].values())
            rows.append(f"| {name} | {count} of `{folder}` (≤ {side} px crops), qualities {v['qualities']} | {cells} |")
    return rows


def write_docs(lines: list) -> None:
    """Replace (or append) the section in docs/BENCHMARKS.md; evaluation.report carries it over."""
    from evaluation.report import write_section
    write_section(DOCS, lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", default=str(ROOT), help="source tree to run [default: this one]")
    ap.add_argument("--label", default="after")
    ap.add_argument("--side", type=int, default=4096)
    ap.add_argument("--det-side", type=int, default=2560, help="crop decoded with several --threads")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-previews", action="store_true")
    ap.add_argument("--report", action="store_true", help="only rewrite the docs section from the saved JSONs")
    args = ap.parse_args(argv)
    if not args.report:
        from evaluation.report import save_run
        res = run(args)
        save_run(OUT, args.label, res)
        print(json.dumps(res, indent=1))
    write_docs(report())


if __name__ == "__main__":
    main()
