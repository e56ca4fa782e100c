"""Ground decoding benchmark: determinism across --threads, a large frame's time and peak RSS,
previews (--reduce). Writes the section "Ground decoding: determinism, large frames, previews" of
docs/BENCHMARKS.md.

    python -m scripts.bench_decode                       # this tree -> results/bench_decode/after.json
    python -m scripts.bench_decode --code OLD --label before --det-side 1024 --no-previews
                                                         # another source tree (e.g. `git archive`
                                                         # of an older commit) for comparison
    python -m scripts.bench_decode --report              # the docs section from the saved JSONs
    python -m scripts.bench_decode --whole OLD --repeat 5 # whole command, OLD tree vs this one, in turn:
                                                         # section "Ground decoding: whole command"
    python -m scripts.bench_decode --whole-report        # that section from its saved JSON

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


WHOLE_HEADING = "## Ground decoding: whole command"
WHOLE_OUT = OUT / "whole"
PASS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "THP_MEM_ALLOC_ENABLE")


def whole_frames(big: int) -> dict:
    """name -> (uint8 frame, megapixels): the frames of the whole-command comparison."""
    from scripts.bench_encode import mosaic
    grey = make_frame(big)
    colour_val = ROOT.parent / "shared" / "data" / "val"
    return {"grey 1024²": grey[:CELL, :CELL], "colour 1024²": mosaic(CELL, CELL, True, colour_val),
            f"grey {big}²": grey}


def decode_command(pythonpath: str, rmc: Path, png: Path, threads: int) -> dict:
    """`python -m remac.ground_decoder RMC -o PNG --quiet --threads N` of the tree on `pythonpath`, in a
    fresh process whose environment has none of PASS_ENV (each tree sets its own): -> wall s, user +
    sys CPU s, peak RSS MiB (its ru_maxrss), sha256 of the PNG."""
    import hashlib
    env = {k: v for k, v in os.environ.items() if k not in PASS_ENV} | {"PYTHONPATH": pythonpath}
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "remac.ground_decoder", str(rmc), "-o", str(png), "--quiet",
                          "--threads", str(threads)], cwd=rmc.parent, env=env, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"decode {rmc} ({pythonpath}) failed:\n{err.decode()[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024,
            "sha256": hashlib.sha256(png.read_bytes()).hexdigest()}


def whole(args) -> dict:
    """Every frame, --repeat times (the big one --big-repeat times), the two trees' decodes in turn
    (before first on even repeats, after first on odd ones), from streams this tree's encoder made."""
    from evaluation.report import machine
    from scripts.bench_rover import shim
    res = {"machine": machine(), "load_before": os.getloadavg()[0], "threads": args.threads, "side": args.side,
           "before_path": args.whole, "before_label": args.whole_label or args.whole,
           "repeat": args.repeat, "big_repeat": args.big_repeat, "runs": [], "frames": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"before": Path(args.whole).resolve(), "after": ROOT}
        paths = {label: shim(code, tmp / label)[0] for label, code in trees.items()}
        for name, frame in whole_frames(args.side).items():
            png, rmc = tmp / "frame.png", tmp / "frame.rmc"
            Image.fromarray(frame).save(png)
            env = {k: v for k, v in os.environ.items() if k not in PASS_ENV} | {"PYTHONPATH": paths["after"]}
            subprocess.run([sys.executable, "-m", "remac.rover_encoder", str(png), "-o", str(rmc), "-q", "75",
                            "--threads", "2", "--quiet"], cwd=tmp, env=env, check=True)
            res["frames"][name] = {"mp": frame.shape[0] * frame.shape[1] / 1e6, "stream_bytes": rmc.stat().st_size}
            repeats = args.repeat if frame.shape[0] * frame.shape[1] <= 4e6 else args.big_repeat
            for rep in range(repeats):
                for label in (("before", "after") if rep % 2 == 0 else ("after", "before")):
                    r = decode_command(paths[label], rmc, tmp / f"{label}.png", args.threads)
                    res["runs"].append({"frame": name, "tree": label, "repeat": rep, **r})
                    print(name, rep, label, f"{r['wall_s']:.2f} s {r['peak_rss_mib']:.0f} MiB", flush=True)
    res["load_after"] = os.getloadavg()[0]
    return res


def whole_report() -> list:
    import statistics
    res = json.loads((WHOLE_OUT / "whole.json").read_text())
    med = lambda xs: statistics.median(xs)
    lines = [WHOLE_HEADING, "",
             f"Generated by `python -m scripts.bench_decode --whole {res['before_path']} --repeat {res['repeat']} "
             f"--big-repeat {res['big_repeat']}" + (f" --side {res['side']}" if res["side"] != 4096 else "") +
             "` (one run; `--whole-report` rewrites this section from its JSON). Each decode is the whole command "
             f"`python -m remac.ground_decoder FRAME.rmc -o OUT.png --quiet --threads {res['threads']}` (what "
             f"`remac-decode` runs) in a fresh process of the tree, the two trees in turn (before first on even "
             f"repeats, after first on odd ones); wall time from the parent, CPU and peak RSS from the child's "
             f"rusage (ru_maxrss), as `/usr/bin/time -v` reports them. *before*: {res['before_label']}; *after*: "
             f"this tree. Streams from this tree's encoder at `-q 75`; frames: grey, the mosaic of "
             f"val/gray_native in 1024-px cells (1024²: its first cell); colour, 2 x 2 Mastcam 512² crops of "
             f"val/color. Machine: {res['machine']}; 1-minute load average {res['load_before']:.1f} before and "
             f"{res['load_after']:.1f} after (a training job held both cores: absolute times are well above an "
             f"idle machine's, the ratios are the figures to compare).", "",
             "| frame | runs each | wall s before | wall s after | after / before (median of pairs) | s / MP after "
             "| CPU s before | CPU s after | peak RSS MiB before | peak RSS MiB after | PNGs identical |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, info in res["frames"].items():
        runs = {t: [r for r in res["runs"] if r["frame"] == name and r["tree"] == t] for t in ("before", "after")}
        pairs = [a["wall_s"] / b["wall_s"] for a in runs["after"] for b in runs["before"] if a["repeat"] == b["repeat"]]
        span = lambda t, k: f"{med([r[k] for r in runs[t]]):.2f} ({min(r[k] for r in runs[t]):.2f}–{max(r[k] for r in runs[t]):.2f})"
        same = len({r["sha256"] for t in runs for r in runs[t]}) == 1
        lines.append(f"| {name} ({info['mp']:.2f} MP) | {len(runs['after'])} | {span('before', 'wall_s')} | "
                     f"{span('after', 'wall_s')} | {med(pairs):.2f} | {med([r['wall_s'] for r in runs['after']]) / info['mp']:.2f} | "
                     f"{med([r['cpu_s'] for r in runs['before']]):.2f} | {med([r['cpu_s'] for r in runs['after']]):.2f} | "
                     f"{med([r['peak_rss_mib'] for r in runs['before']]):.0f} | {med([r['peak_rss_mib'] for r in runs['after']]):.0f} | "
                     f"{'yes' if same else 'NO'} |")
    lines += ["", "Wall: median (min–max) of the runs."]
    return lines


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
    ap.add_argument("--whole", metavar="OLD", help="whole-command comparison: source tree OLD vs this one")
    ap.add_argument("--whole-label", help="how the section names OLD [default: its path]")
    ap.add_argument("--repeat", type=int, default=5, help="--whole: runs of each tree per 1-MP frame")
    ap.add_argument("--big-repeat", type=int, default=2, help="--whole: runs of each tree for the --side frame")
    ap.add_argument("--whole-report", action="store_true", help="only rewrite the whole-command section")
    args = ap.parse_args(argv)
    if args.whole or args.whole_report:
        if args.whole:
            WHOLE_OUT.mkdir(parents=True, exist_ok=True)
            (WHOLE_OUT / "whole.json").write_text(json.dumps(whole(args), indent=1))
        write_docs(whole_report())
        return
    if not args.report:
        from evaluation.report import save_run
        res = run(args)
        save_run(OUT, args.label, res)
        print(json.dumps(res, indent=1))
    write_docs(report())


if __name__ == "__main__":
    main()
