"""Render docs/BENCHMARKS.md from remac-eval result directories plus live complexity and timing.

    python -m evaluation.report results/val_gray results/val_color ... -o docs/BENCHMARKS.md
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path
from remac.rover_encoder.options import EncodeOptions

ROOT = Path(__file__).resolve().parent.parent


def _fmt(v, spec="+.1f", suffix="%"):
    return "n/a" if v is None else f"{v:{spec}}{suffix}"


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    pkgs = ", ".join(f"{p} {version(p)}" for p in ("torch", "onnxruntime", "constriction", "imagecodecs", "pillow", "numpy"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; {pkgs}; "
            f"commit {commit}; {datetime.date.today()}")


def rd_section(result_dir: Path, img_dir: Path) -> list:
    summary = json.loads((result_dir / "summary.json").read_text())
    lines = []
    for set_name, s in summary.items():
        lines += [f"### {set_name} ({s['images']} images, `{result_dir}`)", ""]
        plot = result_dir / f"rd_{set_name.replace(' ', '_')}.png"
        if plot.exists():
            target = img_dir / f"{result_dir.name}_{plot.name}"
            shutil.copyfile(plot, target)
            lines += [f"![{set_name}](img/{target.name})", ""]
        lines += ["| codec | BD-rate vs JPEG 2000 (PSNR) | BD-rate vs JPEG 2000 (MS-SSIM) | bpp range |", "|---|---|---|---|"]
        for name, pts in s["curves"].items():
            rng = f"{pts[0][0]:.3f}–{pts[-1][0]:.3f}" if pts else ""
            lines.append(f"| {name} | {_fmt(s['bd_rate_psnr_vs_jpeg2000'].get(name))} | "
                         f"{_fmt(s['bd_rate_msssim_vs_jpeg2000'].get(name))} | {rng} |")
        for name, v in s.get("bd_rate_psnr_vs_avif_s2", {}).items():
            lines += ["", f"{name} vs AVIF at speed 2 (BD-rate on PSNR over the overlap): **{_fmt(v)}**"]
        if "bd_rate_refs_on_vs_off" in s:
            lines += ["", f"Reference gain (REMAC vs REMAC refs=off, BD-rate on PSNR): "
                          f"**{_fmt(s['bd_rate_refs_on_vs_off'], '+.2f')}**"]
        if "bd_rate_int8_vs_float" in s:
            lines += ["", f"int8 rover analysis vs float (BD-rate on PSNR, same model and library): "
                          f"**{_fmt(s['bd_rate_int8_vs_float'], '+.2f')}**"]
        remac = [n for n in s["curves"] if n.startswith("REMAC")]
        lines += ["", "| REMAC variant | points (bpp / PSNR dB / MS-SSIM), one per quality |", "|---|---|"]
        for n in remac:
            pts = "; ".join(f"{b:.3f} / {p:.2f} / {m:.4f}" for b, p, m in s["curves"][n])
            lines.append(f"| {n} | {pts} |")
        lines.append("")
    return lines


PLANE_COST = 1.5        # colour: Y at full size + Cb, Cr at a quarter of the area each


def complexity_section() -> list:
    from remac.bitstream import modelfile
    from evaluation.complexity import rover_complexity
    from evaluation.timing import onnx_encode_ms_per_mp, onnx_ms_per_mp_of, cli_peak_rss_mib
    lines = ["| | grey | colour (the grey model on Y, Cb, Cr: x1.5 per pixel) |", "|---|---|---|"]
    grey = rover_complexity("grey")
    cx = {"grey": grey, "colour": {k: (round(v * PLANE_COST, 2) if k.endswith("kmac_px") and not k.startswith("minnen")
                                       and not k.startswith("decoder") else v) for k, v in grey.items()}}
    onnx = {n: ROOT / "rover_encoder" / "assets" / "grey" / "encoder.onnx" for n in cx}
    rows = [
        ("rover encoder kMAC/px (ONNX g_a + h_a)", lambda n: cx[n]["encoder_kmac_px"]),
        ("integer h_s kMAC/px (rover and ground)", lambda n: cx[n]["int_hs_kmac_px"]),
        ("**rover total kMAC/px**", lambda n: cx[n]["rover_total_kmac_px"]),
        ("rover total kMAC/px, 2048² frame in 512-px tiles with 64-px context", lambda n: cx[n]["rover_total_kmac_px_2048_tiled"]),
        ("rover encoder parameters", lambda n: f"{cx[n]['encoder_params']:,}"),
        ("ONNX file size (MB)", lambda n: f"{onnx[n].stat().st_size / 1e6:.2f}"),
        ("ONNX encode ms / MP, 1 thread (1024² grey, median of 5), float", lambda n: f"{onnx_encode_ms_per_mp('grey'):.0f}"),
        ("ONNX encode ms / MP, 1 thread (1024² grey, median of 5), int8",
         lambda n: f"{onnx_encode_ms_per_mp('grey', precision='int8'):.0f}"
         if modelfile.load("grey").encoder_sha256.get("int8") else "not shipped"),
        ("Minnen 2018 encoder kMAC/px (N128/M192, same counter)", lambda n: cx[n]["minnen2018_encoder_kmac_px"]),
        ("Minnen 2018 encoder parameters", lambda n: f"{cx[n]['minnen2018_encoder_params']:,}"),
        ("ground ref-decoder kMAC/px (shipped, incl. reference pyramid on a 256² reference)", lambda n: cx[n]["decoder_kmac_px"]),
        ("ground ref-decoder parameters", lambda n: f"{cx[n]['decoder_params']:,}"),
    ]
    for label, f in rows:
        lines.append(f"| {label} | {f('grey')} | {f('colour')} |")
    import io
    import torch
    from remac.models.baselines import Minnen2018Encoder
    ms = {}
    for n, c in (("grey", 1), ("colour", 3)):
        buf = io.BytesIO()
        prog = torch.onnx.export(Minnen2018Encoder(c).eval(), (torch.rand(1, c, 512, 512),), dynamo=True,
                                 external_data=False)
        prog.save(str(Path("/tmp") / f"minnen_{n}.onnx"))
        ms[n] = onnx_ms_per_mp_of((Path("/tmp") / f"minnen_{n}.onnx").read_bytes(), c, size=(512, 512))
    lines.append(f"| Minnen 2018 encoder ONNX ms / MP, 1 thread (512² input, random weights) | {ms['grey']:.0f} | {ms['colour']:.0f} |")
    rss = [cli_peak_rss_mib(side) for side in (1024, 2048)]
    lines += ["", "`remac-encode` as a subprocess (grey, 1 thread, quality 75, default library):", "",
              "| image | wall s | peak RSS MiB |", "|---|---|---|"]
    lines += [f"| {r['side']}×{r['side']} | {r['wall_s']} | {r['peak_rss_mib']} |" for r in rss]
    lines += ["", "Peak RSS is set by one tile (onnxruntime's convolution workspace for a 512-px tile), so it "
                  "does not grow with the image."]
    return lines


def decode_section() -> list:
    import numpy as np
    from PIL import Image
    from remac.bitstream import library
    from evaluation.timing import decode_ms_per_mp
    from remac.rover_encoder.encode import encode
    from remac.rover_encoder.imageio import from_pil
    lib = library.load()
    rng = np.random.default_rng(0)
    out = ["| decode (2 threads, 1024², quality 75) | ms / MP |", "|---|---|"]
    for name, shape in (("grey", (1024, 1024)), ("colour", (1024, 1024, 3))):
        a = (rng.random((shape[0] // 8, shape[1] // 8) + shape[2:]) * 255).astype(np.uint8)
        img = from_pil(Image.fromarray(a).resize((shape[1], shape[0]), Image.BICUBIC))
        data = encode(img, EncodeOptions(7500, library=lib)).data
        out.append(f"| {name} | {decode_ms_per_mp(data, lib, shape[0] * shape[1]):.0f} |")
    return out


def artifacts_section() -> list:
    rows = ["| artifact | size |", "|---|---|"]
    for pattern in ("rover_encoder/assets/*/encoder*.onnx", "bitstream/assets/*/entropy.npz",
                    "models/weights/*.safetensors", "models/store/*/decoder.safetensors"):
        for p in sorted(ROOT.glob(pattern)):
            rows.append(f"| `{p.relative_to(ROOT)}` | {p.stat().st_size / 1e6:.2f} MB |")
    lib = ROOT / "bitstream" / "assets" / "library"
    size = sum(f.stat().st_size for f in lib.rglob("*") if f.is_file())
    rows.append(f"| `bitstream/assets/library/` (default library, {len(list((lib / 'images').glob('*.png')))} images) "
                f"| {size / 1e6:.2f} MB |")
    return rows


# the sections this script generates; every other "## " section of the file (written by the
# benchmark scripts, training.promote --report, or by hand per session) is carried over
GENERATED = ("## Rate–distortion", "## Rover complexity", "## Ground decoding", "## Shipped artifacts")


def section_bounds(text: str, heading: str):
    """(start, end) of the section `heading` in markdown text, up to the next "## " heading or the
    end of the text; None where it is absent."""
    if heading not in text:
        return None
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return start, end + 1 if end >= 0 else len(text)


def save_run(out: Path, label: str, result: dict) -> None:
    """A benchmark script's result, as out/<label>.json ("after", "before", ...)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{label}.json").write_text(json.dumps(result, indent=1))


def saved_runs(out: Path, script: str):
    """-> (after, before or None): the results a benchmark script saved under `out`."""
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    if "after" not in runs:
        raise SystemExit(f"no {out / 'after.json'}: run python {script} first")
    return runs["after"], runs.get("before")


def write_section(path: Path, lines: list) -> None:
    """Replace the section whose heading is lines[0] in the markdown file at `path` with `lines`, or
    append it (the benchmark scripts that write their own sections)."""
    text = path.read_text()
    section = "\n".join(lines) + "\n"
    bounds = section_bounds(text, lines[0])
    if bounds:
        text = text[:bounds[0]] + section + ("\n" + text[bounds[1]:] if bounds[1] < len(text) else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(f"wrote {path}")


def carried_sections(path: Path) -> list:
    """Every "## " section of the existing file at `path` whose heading line is not one of
    GENERATED, in file order, as lines (each preceded by a blank line)."""
    text = path.read_text() if path.exists() else ""
    out = []
    for chunk in text.split("\n## ")[1:]:
        section = ("## " + chunk).rstrip("\n").split("\n")
        if section[0] not in GENERATED:
            out += [""] + section
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    ap.add_argument("--commands", default="bash scripts/benchmarks.sh")
    args = ap.parse_args(argv)
    img_dir = args.output.parent / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# REMAC benchmarks", "",
             f"Generated by `{args.commands}` (rerun it to refresh every number here).", "",
             f"Machine: {machine()}.", "",
             "Rates are real file bytes (headers included) over pixels; PSNR and MS-SSIM are averaged over "
             "images per setting. BD-rates use the `bjontegaard` package (Akima) against JPEG 2000 "
             "(Pillow/OpenJPEG, irreversible, colour with mct=1); negative is better. "
             "A BD-rate is `n/a` where the curves do not overlap in quality.", "",
             GENERATED[0], ""]
    for r in args.results:
        lines += rd_section(r, img_dir)
    lines += [GENERATED[1], ""] + complexity_section() + ["", GENERATED[2], ""] + decode_section()
    lines += ["", GENERATED[3], ""] + artifacts_section()
    lines += carried_sections(args.output)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
