"""Rover benchmark: where one encode's time goes, ms/MP and peak RSS per frame size, grey and colour,
1 thread, against the MAC limit (a plain float32 GEMM of the same MAC count), for two source trees
measured in turn in one run. Writes the section "Rover: time per stage and the MAC limit" of
docs/BENCHMARKS.md.

    git worktree add /tmp/base_d641 d641a4c
    python -m scripts.bench_rover --before /tmp/base_d641 --report docs/BENCHMARKS.md
    python -m scripts.bench_rover --saved --report docs/BENCHMARKS.md   # the section again from the saved run
    python -m scripts.bench_rover --sizes 0.01 --val DIR           # a quick check (tests)

Each encode runs in a fresh process (this file run as a script with --worker): it imports the tree's
rover encoder (its `remac.*` packages through a temporary shim of symlinks, or an older tree's
top-level `bitstream`/`rover_encoder` from the tree itself), wraps the pipeline's functions with
timers (each stage's own time: nested stages are subtracted) and calls the API the command line
calls, `encode_file(frame, out, quality=75, threads=1)`. Start-up is the process's wall time minus
what it measured after its interpreter came up, imports included. Peak RSS is the process's
ru_maxrss. The MAC limit: kMAC/px (--kmac, docs/BENCHMARKS.md "Rover complexity", grey all-in)
times the coded samples (colour: luma + two quarter-size chroma planes, 1.5 per pixel) as
192x1728 by 1728x4096 float32 GEMMs in numpy on one thread, in its own process. Frames tile the
validation images (scripts.bench_encode.mosaic) and are generated, never committed.
"""
import argparse
import functools
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "bench_rover"
HEADING = "## Rover: time per stage and the MAC limit"
PACKAGES = ("bitstream", "rover_encoder", "ground_decoder", "models")
KMAC_PER_PX = 14.62
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
GEMM_SHAPE = (192, 1728, 4096)      # M x K by K x N: a 3x3 conv of 192 channels over 4096 positions
# (label, module, attribute): a label may name an argument index ("{1}" is the call's args[1])
STAGES = [("read", "rover_encoder.api", "load_source"),
          ("model load", "rover_encoder.analysis", "Analyzer.__init__"),
          ("g_a", "rover_encoder.analysis", "Analyzer.analyse"),
          ("h_a", "rover_encoder.analysis", "Analyzer.hyper"),
          ("h_s", "bitstream.intnet", "trunk"),
          ("h_s", "bitstream.intnet", "hyper_features"),
          ("context slice {1}", "bitstream.intnet", "slice_params"),
          ("spatial passes", "bitstream.spatial", "run_passes"),
          ("RDO", "bitstream.entropy", "rdo_symbols"),
          ("coding", "bitstream.entropy", "encode_tile"),
          ("write", "bitstream.container", "write")]


class Clock:
    """Exclusive time per label of wrapped functions: a stage's time excludes the wrapped stages it calls."""

    def __init__(self):
        self.totals, self.stack = {}, []

    def wrap(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            name = label.format(*args) if "{" in label else label
            self.stack.append(0.0)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                self.totals[name] = self.totals.get(name, 0.0) + dt - self.stack.pop()
                if self.stack:
                    self.stack[-1] += dt
        return timed


def instrument(prefix: str, clock: Clock) -> None:
    """Wrap every STAGES function the tree has (module attributes and the from-imported copies)."""
    import importlib
    for label, module, attr in STAGES:
        mod = importlib.import_module(prefix + module)
        owner, _, name = attr.rpartition(".")
        holder = getattr(mod, owner) if owner else mod
        fn = getattr(holder, name, None)
        if fn is None:
            continue
        timed = clock.wrap(label, fn)
        setattr(holder, name, timed)
        for other in list(sys.modules.values()):
            if not owner and getattr(other, "__name__", "").startswith(prefix) and getattr(other, name, None) is fn:
                setattr(other, name, timed)


def worker(args) -> dict:
    """One encode in this process (see the module doc) -> stages {label: s}, bytes, sha256."""
    t0 = time.perf_counter()
    if (Path(args.code) / "rover_encoder" / "entry.py").exists():    # the CLI's BLAS limit, before numpy
        __import__(args.prefix + "rover_encoder.entry", fromlist=["x"]).limit_blas_threads(["--threads", "1"])
    api = __import__(args.prefix + "rover_encoder.api", fromlist=["x"])
    __import__(args.prefix + "rover_encoder.cli")
    import onnxruntime  # noqa: F401  (what the command imports before it encodes)
    clock = Clock()
    clock.totals["imports"] = time.perf_counter() - t0
    instrument(args.prefix, clock)
    t = time.perf_counter()
    api.encode_file(args.worker, args.out, quality=75, threads=1)
    clock.totals["encode"] = time.perf_counter() - t
    data = Path(args.out).read_bytes()
    return {"stages": clock.totals, "in_process_s": time.perf_counter() - t0, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def gemm_worker(macs: float) -> dict:
    """numpy float32 GEMMs (GEMM_SHAPE) on one thread for `macs` multiply-adds -> seconds."""
    import numpy as np
    m, k, n = GEMM_SHAPE
    rng = np.random.default_rng(0)
    a = rng.integers(-8, 8, (m, k)).astype(np.float32)
    b = rng.integers(0, 255, (k, n)).astype(np.float32)
    a @ b
    calls = max(1, round(macs / (m * k * n)))
    t = time.perf_counter()
    for _ in range(calls):
        a @ b
    return {"gemm_s": (time.perf_counter() - t) * macs / (calls * m * k * n)}


def shim(code: Path, tmp: Path) -> tuple:
    """-> (PYTHONPATH, import prefix) that runs source tree `code`: a `remac.*` tree through a shim
    of symlinks (tmp/remac/<package> -> code/<package>), an older tree's top-level packages as they are."""
    if "from remac." not in (code / "rover_encoder" / "api.py").read_text():
        return str(code), ""
    pkg = tmp / "remac"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").touch()
    for name in PACKAGES:
        if not (pkg / name).exists():
            (pkg / name).symlink_to(code / name)
    return str(tmp), "remac."


def measure(args) -> dict:
    """Every size x kind x repeat, each tree's encode in turn, then the GEMM of the same MACs."""
    from PIL import Image
    from evaluation.report import machine
    from scripts.bench_encode import mosaic
    res = {"machine": machine(), "load_before": os.getloadavg()[0], "kmac_per_px": args.kmac, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"after": Path(args.code).resolve()}
        if args.before:
            trees = {"before": Path(args.before).resolve(), **trees}
        paths = {label: shim(code, tmp / label) for label, code in trees.items()}
        for size in args.sizes:
            for colour in (False, True):
                side = max(16, round((size * 1e6) ** 0.5))
                src = tmp / f"frame_{side}_{'rgb' if colour else 'grey'}.png"
                Image.fromarray(mosaic(side, side, colour, Path(args.val))).save(src)
                samples = side * side * (1.5 if colour else 1.0)
                for rep in range(args.repeat if size <= 1 else 1):
                    for label, code in trees.items():
                        pythonpath, prefix = paths[label]
                        r = spawn(["--worker", src, "--out", tmp / f"{label}.rmc", "--code", code, "--prefix", prefix],
                                  code, {"PYTHONPATH": pythonpath})
                        res["runs"].append({"tree": label, "mp": side * side / 1e6, "colour": colour, **r})
                    g = spawn(["--gemm", args.kmac * 1e3 * samples], ROOT, {"PYTHONPATH": "", **ONE_THREAD})
                    res["runs"].append({"tree": "gemm", "mp": side * side / 1e6, "colour": colour, **g})
                    print(size, "colour" if colour else "grey", rep, flush=True)
                src.unlink()
    res["load_after"] = os.getloadavg()[0]
    return res


def spawn(args: list, cwd: Path, env: dict) -> dict:
    """Run this file with `args` in a fresh process (cwd, the environment without BLAS thread
    settings plus `env`: an encode gets the BLAS threads its tree's command line gives it) -> its
    JSON plus wall_s, peak_rss_mib (its own ru_maxrss, os.wait4) and startup_s (for an encode:
    interpreter start and imports)."""
    base = {k: v for k, v in os.environ.items() if k not in ONE_THREAD}
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, __file__, *map(str, args)], cwd=cwd, env={**base, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"bench worker {args} failed:\n{err.decode()[-2000:]}")
    r = {**json.loads(out), "wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}
    if "stages" in r:
        r["startup_s"] = wall - r["in_process_s"] + r["stages"]["imports"]
    return r


def median(runs: list, key) -> float:
    return statistics.median(key(r) for r in runs)


def report(res: dict) -> list:
    """The docs section from a saved run: sizes table, stages at the size nearest 1 MP, GEMM ratio."""
    trees = [t for t in ("before", "after") if any(r["tree"] == t for r in res["runs"])]
    pick = lambda tree, mp, colour: [r for r in res["runs"] if (r["tree"], r["mp"], r["colour"]) == (tree, mp, colour)]
    sizes = sorted({r["mp"] for r in res["runs"]})
    lines = [HEADING, "",
             f"Generated by `{res['command']}` (scripts/bench_rover.py: one run, the trees measured in turn; "
             "medians of the repeats at 1 MP and below, one encode above). Each encode is a fresh process of the "
             "tree's rover encoder calling what `remac-encode FRAME -q 75 --threads 1` calls, with the BLAS threads "
             "that tree's command line gives numpy (a tree without rover_encoder/entry.py: OpenBLAS's default, one per "
             f"core); *before* is {res.get('before_label') or 'the --before tree'}, *after* the commit named below. "
             "Frames tile the validation images "
             "(grey: native Navcam frames in 1024-px cells; colour: 512-px Mastcam crops). "
             f"Machine: {res['machine']}; 1-minute load average {res['load_before']:.1f} before and "
             f"{res['load_after']:.1f} after (other jobs shared the two cores: ratios are the figures to trust).", "",
             "| frame | MP | " + " | ".join(f"{t}: ms / MP (whole process) | {t}: encode ms / MP | {t}: peak RSS MiB"
                                            for t in trees)
             + " | GEMM ms / MP | after encode / GEMM |", "|---|---|" + "---|---|---|" * len(trees) + "---|---|"]
    for colour in (False, True):
        for mp in sizes:
            cells = []
            for t in trees:
                runs = pick(t, mp, colour)
                cells += [f"{1e3 * median(runs, lambda r: r['wall_s']) / mp:.0f}",
                          f"{1e3 * median(runs, lambda r: r['stages']['encode']) / mp:.0f}",
                          f"{median(runs, lambda r: r['peak_rss_mib']):.0f}"]
            gemm = median(pick("gemm", mp, colour), lambda r: r["gemm_s"])
            enc = median(pick("after", mp, colour), lambda r: r["stages"]["encode"])
            lines.append(f"| {'colour' if colour else 'grey'} | {mp:.2f} | " + " | ".join(cells)
                         + f" | {1e3 * gemm / mp:.0f} | {enc / gemm:.2f} |")
    same = all(len({r["sha256"] for r in res["runs"] if (r["mp"], r["colour"]) == (mp, c) and r["tree"] != "gemm"}) == 1
               for mp in sizes for c in (False, True))
    lines += ["", f"Streams identical across the trees at every size: {'yes' if same else 'NO'}. GEMM: numpy "
                  f"float32 {'x'.join(map(str, GEMM_SHAPE))} products on one thread for {res['kmac_per_px']} kMAC "
                  "per coded sample (colour codes 1.5 samples per pixel: luma and two 4:2:0 chroma planes); "
                  "*encode / GEMM* is the encode call (no start-up) over that GEMM's time.", ""]
    mp = min(sizes, key=lambda s: abs(s - 1))
    lines += stage_table(res, trees, mp, pick)
    return lines


def stage_table(res: dict, trees: list, mp: float, pick) -> list:
    """Median ms per stage at frame size `mp`, grey and colour, per tree (own time: nested stages excluded)."""
    cols = [(t, c) for c in (False, True) for t in trees]
    labels = []
    for r in res["runs"]:
        labels += [k for k in r.get("stages", {}) if k not in labels and k not in ("imports", "encode")]
    lines = [f"Where the time goes at {mp:.2f} MP, ms (median; each stage its own time):", "",
             "| stage | " + " | ".join(f"{t} {'colour' if c else 'grey'}" for t, c in cols) + " |",
             "|---|" + "---|" * len(cols)]

    def row(name, key):
        cells = [f"{1e3 * median(pick(t, mp, c), key):.0f}" for t, c in cols]
        return f"| {name} | " + " | ".join(cells) + " |"
    lines.append(row("start-up (interpreter, imports)", lambda r: r["startup_s"]))
    for label in labels:
        lines.append(row(label, lambda r, k=label: r["stages"].get(k, 0.0)))
    lines.append(row("other (in the encode call)", lambda r: r["stages"]["encode"] - sum(
        v for k, v in r["stages"].items() if k not in ("imports", "encode"))))
    lines.append(row("**whole process**", lambda r: r["wall_s"]))
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="a second source tree to measure in the same run (e.g. a worktree of d641a4c)")
    ap.add_argument("--before-label", default=None, help="what --before is, for the report [default: its path]")
    ap.add_argument("--code", default=str(ROOT), help="the source tree to measure as *after* [default: this one]")
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1, 4, 16], help="frame sizes, MP")
    ap.add_argument("--repeat", type=int, default=3, help="encodes per tree at sizes up to 1 MP")
    ap.add_argument("--val", default=str(ROOT.parent / "shared" / "data" / "val"),
                    help="validation images (gray_native/, color/) the frames tile")
    ap.add_argument("--kmac", type=float, default=KMAC_PER_PX, help="rover kMAC per coded sample")
    ap.add_argument("--results", default=str(OUT), help="folder for the run's JSON [default: %(default)s]")
    ap.add_argument("--saved", action="store_true", help="no measuring: the report from the run saved in --results")
    ap.add_argument("--report", help="markdown file whose section this run replaces (e.g. docs/BENCHMARKS.md)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="remac.", help=argparse.SUPPRESS)
    ap.add_argument("--gemm", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker or args.gemm:
        print(json.dumps(worker(args) if args.worker else gemm_worker(args.gemm)))
        return
    from evaluation.report import save_run, saved_runs, write_section
    if args.saved:
        res = saved_runs(Path(args.results), "-m scripts.bench_rover")[0]
    else:
        res = measure(args)
        res["command"] = "python -m scripts.bench_rover " + shlex.join(sys.argv[1:] if argv is None else argv)
        res["before_label"] = args.before_label or args.before
        save_run(Path(args.results), "after", res)
    lines = report(res)
    print("\n".join(lines))
    if args.report:
        write_section(Path(args.report), lines)


if __name__ == "__main__":
    main()
