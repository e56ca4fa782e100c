"""scripts/: each script is run by a test somewhere. The Python ones that need ../shared/data or minutes
of machine time (bench_encode, bench_decode) start and parse their options here; the shell scripts
parse, and every module (`python -m ...`) and script they name exists. Scripts run from the
repository root as `python -m scripts.NAME` (they import the tooling, which is not installed)."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHELL = sorted((ROOT / "scripts").glob("*.sh"))


@pytest.mark.parametrize("name", ["bench_encode", "bench_decode", "bench_rover"])
def test_benchmark_scripts_start(name):
    r = subprocess.run([sys.executable, "-m", f"scripts.{name}", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "--report" in r.stdout, r.stderr


@pytest.mark.parametrize("path", SHELL, ids=lambda p: p.name)
def test_shell_scripts_parse_and_name_what_exists(path):
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    for module in re.findall(r"python -m ([\w.]+)", text):
        assert importlib.util.find_spec(module) is not None, (path.name, module)
    for script in re.findall(r"scripts/[\w.]+\.(?:py|sh)", text):
        assert (ROOT / script).exists(), (path.name, script)


def test_no_script_edits_sys_path():
    for path in (ROOT / "scripts").glob("*.py"):
        assert "sys.path" not in path.read_text(), path.name


def test_refinement_benchmark_meets_the_staged_downlink_target_on_a_test_image():
    """bench_refine's measure on the Navcam test crop: base q20 + layer to q75 decodes to the one-shot
    q75 pixels and costs at most 1.05x the one-shot stream (resending costs more)."""
    pytest.importorskip("torch")
    from scripts.bench_refine import measure
    layer = measure(str(ROOT / "tests" / "data" / "navcam_gray.png"), None, 20, [75], "L")["layers"][0]
    assert layer["same_pixels"] and layer["ratio"] <= 1.05 < layer["resend"]


def test_site_library_benchmark_codes_each_way_on_a_small_position(tmp_path):
    """bench_site_libraries on one made-up position of 7 frames (crops of the Navcam test image):
    every frame, quality and way is coded and decoded, and each way is ranked against no references."""
    pytest.importorskip("torch")
    from PIL import Image
    from scripts.bench_site_libraries import QUALITIES, WAYS, measure, positions, summary
    from remac.rover_encoder.library_build import build
    grey = Image.open(ROOT / "tests" / "data" / "navcam_gray.png").convert("L")
    (tmp_path / "val" / "p1").mkdir(parents=True)
    rows = ["split,site,sclk,sol,path,source_path,sha256,also_in"]
    for k in range(7):
        grey.crop((16 * k, 8 * k, 16 * k + 128, 8 * k + 128)).save(tmp_path / "val" / "p1" / f"{k}.png")
        rows.append(f"val,p1,{100 + k},1,val/p1/{k}.png,,,")
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    frames = positions(tmp_path)
    assert [p.name for p in frames["p1"]] == [f"{k}.png" for k in range(7)]
    build([str(p) for p in frames["p1"][:3]], tmp_path / "lib")
    records = measure(frames, {"p1": tmp_path / "lib"}, per_position=1, log=lambda _: None)
    assert len(records) == len(QUALITIES) * len(WAYS) and min(r["psnr"] for r in records) > 20
    result = summary(records)
    assert all(isinstance(result[w]["bd_vs_none"], float) for w in WAYS[1:])


def test_roi_benchmark_raises_the_region_above_the_rest_on_a_test_image():
    """bench_roi's measure on the Navcam test image with 128-px tiles: the --roi stream is larger
    than the plain one and its region is coded at a higher quality, with a higher PSNR there."""
    pytest.importorskip("torch")
    from scripts.bench_roi import measure
    plain, roi = measure(str(ROOT / "tests" / "data" / "navcam_gray.png"), "16,16,64,64", 40, 128, repeat=1)
    assert roi[1] > plain[1] and roi[3] > roi[2] == plain[2] == 40
    assert roi[4] > plain[4] + 1


def test_colour_benchmark_codes_both_transforms_on_a_test_image():
    """bench_colour's measure on a Mastcam crop: both ways coded and decoded at each quality, rate
    and PSNR rising with quality."""
    pytest.importorskip("torch")
    import numpy as np
    from PIL import Image
    from scripts.bench_colour import WAYS, measure
    a = np.asarray(Image.open(ROOT / "tests" / "data" / "mastcam_rgb.png").convert("RGB"))[:128, :128]
    curves = measure([a], (20, 60))
    assert sorted(curves) == sorted(WAYS)
    for (b1, p1), (b2, p2) in curves.values():
        assert 0 < b1 < b2 and 25 < p1 < p2


def test_decode_stages_times_a_decode_and_writes_the_same_image(tmp_path):
    """scripts/decode_stages.py (docs/BENCHMARKS.md, "where the time and memory go"): the command line
    with timers runs to the end, prints its stages and writes what remac-decode writes."""
    from remac.ground_decoder.cli import decode_main
    from remac.rover_encoder.cli import encode_main
    from tests.conftest import GREY
    from click.testing import CliRunner
    rmc, plain, timed = tmp_path / "g.rmc", tmp_path / "plain.png", tmp_path / "timed.png"
    assert CliRunner().invoke(encode_main, [str(GREY), "-o", str(rmc), "-q", "50", "--quiet"]).exit_code == 0
    assert CliRunner().invoke(decode_main, [str(rmc), "-o", str(plain), "--quiet"]).exit_code == 0
    r = subprocess.run([sys.executable, "-m", "scripts.decode_stages", str(rmc), "-o", str(timed), "--quiet"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "entropy decoding" in r.stdout and "synthesis: trunk" in r.stdout and "whole process" in r.stdout
    assert timed.read_bytes() == plain.read_bytes()


def test_prior_benchmark_codes_a_reimaged_test_image():
    """bench_prior's code_pair on the Navcam test image moved by (5, -11) px: the stream given the
    earlier one is under half the bytes of the frame alone, within 1 dB."""
    pytest.importorskip("torch")
    import numpy as np
    from PIL import Image
    from remac.bitstream import library
    from scripts.bench_prior import code_pair
    a = np.asarray(Image.open(ROOT / "tests" / "data" / "navcam_gray.png").convert("L"))
    earlier, new = a[24:216, 24:216], a[29:221, 13:205]
    row = code_pair(earlier, new, 50, {"library": library.load(), "threads": 1})
    assert row["given"] < 0.5 * row["alone"] and row["psnr_given"] > row["psnr_alone"] - 1
