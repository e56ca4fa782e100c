"""Rover encoding benchmark: large frames through the real `remac-encode` (seconds and peak RSS per
frame size), rate control's cost, and batch throughput with --jobs 1 and 2. Writes the section
"Rover: large frames" of docs/BENCHMARKS.md.

    python -m scripts.bench_encode                       # this tree -> results/bench_encode/after.json
    mkdir /tmp/before && git archive HEAD | tar -x -C /tmp/before
    python -m scripts.bench_encode --code /tmp/before --label before --no-batch
                                                         # another source tree, for comparison
    python -m scripts.bench_encode --report              # the docs section from the saved JSONs

Every encode is `python -m remac.rover_encoder` (the remac-encode command line) in a fresh process of the
chosen source tree, 1 thread, quality 75, the default library; wall time is the whole command
(start-up, PNG decoding, analysis, coding, writing), peak RSS the process's ru_maxrss (os.wait4).
Test frames are generated from ../shared/data/val, never committed: grey frames are mosaics of the
native-resolution Navcam validation frames scaled to 1024-px cells (bicubic), colour frames mosaics
of the 512-px Mastcam validation crops. The batch is 8 Mastcam crops and 8 512-px crops of the
Navcam frames, encoded (and decoded) as a directory with -j 1 and -j 2.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
VAL = ROOT.parent / "shared" / "data" / "val"
OUT = ROOT / "results" / "bench_encode"
DOCS = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Rover: large frames"
FRAMES = [  # name, width, height, colour
    ("Navcam 1024²", 1024, 1024, False), ("Mastcam 1600×1200", 1600, 1200, True),
    ("Navcam 2048²", 2048, 2048, False), ("Mastcam 2048²", 2048, 2048, True),
    ("mosaic 4096²", 4096, 4096, False)]
RATE_FRAME, RATE_BPP = "Navcam 2048²", 0.25


def sources(colour: bool, val: Path = VAL) -> list:
    """The validation images under `val` (color/ or gray_native/), sorted."""
    paths = sorted(glob.glob(str(val / ("color" if colour else "gray_native") / "*.png")))
    if not paths:
        sys.exit(f"no images in {val / ('color' if colour else 'gray_native')}")
    return paths


def mosaic(width: int, height: int, colour: bool, val: Path = VAL) -> np.ndarray:
    """-> (height, width[, 3]) uint8. Grey: the Navcam frames under `val` scaled to 1024-px cells;
    colour: the 512-px Mastcam crops as they are."""
    paths, cell = sources(colour, val), 512 if colour else 1024
    frame = np.zeros((height, width) + ((3,) if colour else ()), np.uint8)
    k = 0
    for top in range(0, height, cell):
        for left in range(0, width, cell):
            im = Image.open(paths[k % len(paths)]).convert("RGB" if colour else "L")
            a = np.asarray(im if im.size == (cell, cell) else im.resize((cell, cell), Image.BICUBIC))
            h, w = min(cell, height - top), min(cell, width - left)
            frame[top:top + h, left:left + w] = a[:h, :w]
            k += 1
    return frame


def command(code: Path, module: str, args) -> dict:
    """Run `python -m module args` from source tree `code`: -> wall s, peak RSS MiB, exit code."""
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=code, stdout=out,
                             stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(code)})
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if p.returncode:
        sys.exit(f"{module} {args} failed ({p.returncode}):\n{text[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "output": text}


def encode(code: Path, src: Path, dst: Path, *extra) -> dict:
    r = command(code, "remac.rover_encoder", [src, "-o", dst, "--threads", "1", "--quiet", *(extra or ("-q", "75"))])
    r.pop("output")
    w, h = Image.open(src).size
    r.update(bytes=dst.stat().st_size, bpp=round(8 * dst.stat().st_size / (w * h), 4),
             s_per_mp=round(r["wall_s"] / (w * h / 1e6), 2))
    return r


def batch(code: Path, tmp: Path) -> dict:
    src = tmp / "batch"
    src.mkdir()
    for i, p in enumerate(sources(True)[:8]):
        Image.open(p).convert("RGB").save(src / f"mastcam_{i}.png")
    for i, p in enumerate(sources(False)[:8]):
        Image.open(p).convert("L").crop((0, 0, 512, 512)).save(src / f"navcam_{i}.png")
    n = len(list(src.glob("*.png")))
    res = {"files": n}
    for jobs in (1, 2):
        for side, module, inp, suffix in (("encode", "remac.rover_encoder", src, "rmc"), ("decode", "remac.ground_decoder", None, "png")):
            inp = inp or tmp / "enc1"
            r = command(code, module, [inp, "-o", f"{tmp / (side[:3] + str(jobs))}/", "-j", jobs, "--quiet"])
            made = len(list((tmp / (side[:3] + str(jobs))).rglob(f"*.{suffix}")))
            if made != n:
                sys.exit(f"{side} -j {jobs} wrote {made} of {n} files")
            res[f"{side}_j{jobs}"] = {"wall_s": r["wall_s"], "files_per_s": round(n / r["wall_s"], 3),
                                      "peak_rss_mib_per_process": r["peak_rss_mib"]}
    same = all((tmp / "enc1" / p.name).read_bytes() == p.read_bytes() for p in (tmp / "enc2").glob("*.rmc"))
    res["streams_identical_j1_j2"] = same
    return res


def run(args) -> dict:
    code = Path(args.code).resolve()
    from evaluation.report import machine
    res = {"label": args.label, "code": str(code), "machine": machine(), "load_before": os.getloadavg()[0],
           "frames": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, w, h, colour in FRAMES:
            src = tmp / f"frame_{w}x{h}_{'rgb' if colour else 'grey'}.png"
            Image.fromarray(mosaic(w, h, colour)).save(src)
            res["frames"][name] = encode(code, src, tmp / "out.rmc")
            print(name, res["frames"][name], flush=True)
            if name == RATE_FRAME and not args.no_batch:
                r = encode(code, src, tmp / "rate.rmc", "--bpp", str(RATE_BPP))
                r["budget_bytes"] = int(RATE_BPP * w * h / 8)
                res["rate_control"] = {"frame": name, "bpp_target": RATE_BPP, **r}
                print("rate control", r, flush=True)
            src.unlink()
        if not args.no_batch:
            res["batch"] = batch(code, tmp)
            print("batch", res["batch"], flush=True)
    res["load_after"] = os.getloadavg()[0]
    return res


def report() -> list:
    from evaluation.report import saved_runs
    after, before = saved_runs(OUT, "scripts/bench_encode.py")
    lines = [HEADING, "",
             "Generated by `python -m scripts.bench_encode`, for the *before* columns the same script on the "
             "last commit's tree (`git archive HEAD`, `--code /tmp/before --label before --no-batch`), then "
             "`python -m scripts.bench_encode --report`. Each encode is the real command line "
             "(`python -m remac.rover_encoder FRAME -o OUT -q 75 --threads 1`) in a fresh process; wall time is the "
             "whole command, peak RSS its ru_maxrss. Frames are mosaics of the validation images (grey: "
             "native Navcam frames in 1024-px cells; colour: 512-px Mastcam crops), generated by the script. "
             f"Machine: {after['machine']}; 1-minute load average {after['load_before']:.1f} before and "
             f"{after['load_after']:.1f} after the run (a training job shared the two cores, so times are "
             "2-3x what an idle machine gives).", "",
             "| frame | MP | before: wall s | before: peak RSS MiB | after: wall s | after: s / MP | "
             "after: peak RSS MiB | after: bytes (bpp) |", "|---|---|---|---|---|---|---|---|"]
    for name, w, h, _ in FRAMES:
        a, b = after["frames"].get(name), (before or {}).get("frames", {}).get(name)
        if a is None:
            continue
        lines.append(f"| {name} | {w * h / 1e6:.2f} | {b['wall_s'] if b else '–'} | {b['peak_rss_mib'] if b else '–'} "
                     f"| {a['wall_s']} | {a['s_per_mp']} | {a['peak_rss_mib']} | {a['bytes']} ({a['bpp']}) |")
    if before and all(before["frames"].get(name, {}).get("bytes") == after["frames"][name]["bytes"]
                      for name in after["frames"]):
        lines += ["", "Every stream is the same size before and after (tests/test_rate.py checks the cut graph "
                      "against the whole one bit for bit)."]
    lines += ["", "What changed: onnxruntime's memory patterns are off (they pre-plan and keep one block per input "
                  "shape: edge tiles and context windows have several), the analysis runs as g_a and h_a sessions "
                  "cut from the one shipped graph, images are converted to float with one copy instead of two, "
                  "16-bit samples are read as int32, not int64, and the file's bytes are dropped before encoding. "
                  "What remains is one tile's g_a working set in onnxruntime (~110 MiB for a 640² window, the "
                  "512-px tile plus its 64-px context, colour or grey: 64 channels at half resolution), the "
                  "frame as float32 (4 bytes per sample) and ~55 MiB of Python, numpy and onnxruntime."]
    rc = after.get("rate_control")
    if rc:
        fixed = after["frames"][rc["frame"]]
        lines += ["", f"Rate control on the {rc['frame']} frame (`--bpp {rc['bpp_target']}`: budget "
                      f"{rc['budget_bytes']} bytes): {rc['bytes']} bytes "
                      f"({100 * (1 - rc['bytes'] / rc['budget_bytes']):.2f} % under), {rc['wall_s']} s "
                      f"against {fixed['wall_s']} s at a fixed quality; peak RSS {rc['peak_rss_mib']} MiB. "
                      "g_a runs once; each quality tried costs h_a, the integer entropy model and the range "
                      "coder (2 ends plus 2-4 guesses)."]
    bt = after.get("batch")
    if bt:
        n = bt["files"]
        lines += ["", f"Batch throughput, {n} files of 512² (8 colour, 8 grey), `remac-encode DIR -o OUT/ -j N "
                      f"--quiet` and `remac-decode OUT/ -o DEC/ -j N --quiet`. -j 2 runs two worker processes "
                      "(started fresh: each imports onnxruntime or PyTorch and loads its model once), one thread "
                      "each; -j 1 runs in the command's own process (the decoder with its default --threads 2):", "",
                  "| | wall s | files / s | peak RSS MiB (largest process) |", "|---|---|---|---|"]
        for key in ("encode_j1", "encode_j2", "decode_j1", "decode_j2"):
            r = bt[key]
            lines.append(f"| {key.replace('_j', ' -j ')} | {r['wall_s']} | {r['files_per_s']} | "
                         f"{r['peak_rss_mib_per_process']} |")
        lines += ["", f"Streams from -j 1 and -j 2 identical: {'yes' if bt['streams_identical_j1_j2'] else 'NO'}. "
                      "-j N pays off with idle cores: on this 2-core machine a training job held most of both, and "
                      "the decoder's -j 1 already runs two synthesis threads with one model load, where each "
                      "-j 2 worker imports PyTorch and loads the model itself."]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", default=str(ROOT), help="source tree to run [default: this one]")
    ap.add_argument("--label", default="after")
    ap.add_argument("--no-batch", action="store_true", help="large frames only (no rate control, no batch)")
    ap.add_argument("--report", action="store_true", help="only rewrite the docs section from the saved JSONs")
    args = ap.parse_args(argv)
    from evaluation.report import save_run, write_section
    if not args.report:
        save_run(OUT, args.label, run(args))
    write_section(DOCS, report())


if __name__ == "__main__":
    main()
