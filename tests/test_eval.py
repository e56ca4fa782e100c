"""remac-eval: BD-rate arithmetic with a known answer, and the CLI's outputs; the scripts that derive
harder val sets and bound what a reference could explain."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner

from evaluation import rd
from evaluation.cli import main as eval_main
from evaluation.variants import LUMA, derive, shifted, variant
from scripts.ref_oracle import best_detail_sse, blocks, detail, global_shift
from tests.conftest import DATA, GREY, pixels


def test_bd_rate_of_a_uniformly_cheaper_curve():
    anchor = [(r, 20 + 10 * r ** 0.5, float("nan")) for r in (0.1, 0.2, 0.4, 0.8, 1.6)]
    test = [(0.8 * r, p, m) for r, p, m in anchor]
    assert rd.bd_rate(anchor, test) == pytest.approx(-20.0, abs=0.1)
    assert rd.bd_rate(anchor, anchor) == pytest.approx(0.0, abs=1e-6)


def test_bd_rate_tolerates_non_monotone_points_and_refuses_disjoint_curves():
    anchor = [(0.1, 25, 0), (0.2, 27, 0), (0.4, 30, 0), (0.8, 33, 0), (1.6, 36, 0)]
    noisy = anchor[:2] + [(0.3, 26.5, 0)] + anchor[2:]
    assert rd.bd_rate(anchor, noisy) == pytest.approx(0.0, abs=1e-6)
    far = [(r, p + 50, m) for r, p, m in anchor]
    assert rd.bd_rate(anchor, far) is None


def test_cli_writes_records_summary_and_plots(tmp_path):
    out = tmp_path / "res"
    r = CliRunner().invoke(eval_main, [str(DATA), "--out", str(out), "--codecs", "REMAC,JPEG 2000",
                                       "--qualities", "10,40,70,95"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"data grey", "data colour"}
    assert summary["data grey"]["images"] == 2 and summary["data colour"]["images"] == 1
    assert len(summary["data grey"]["curves"]["REMAC"]) == 4
    assert "REMAC" in summary["data grey"]["bd_rate_psnr_vs_jpeg2000"]
    assert (out / "rd_data_grey.png").stat().st_size > 1000
    lines = (out / "records.csv").read_text().splitlines()
    assert lines[0].startswith("codec,setting,image") and len(lines) == 1 + (4 + 8) * 3


def test_regenerating_benchmarks_keeps_every_hand_written_section(tmp_path):
    from evaluation.report import carried_sections
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# REMAC benchmarks\n\nold header\n\n## Rate–distortion\n\n### gray\n| a |\n\n"
                   "## Rover complexity\nold\n\n## Ground decoding: determinism, large frames\nkept 1\n\n"
                   "## Ground decoding\nold\n\n## Session 9: what we learned\n### detail\nkept 2\n"
                   "## Shipped artifacts\nold\n")
    carried = carried_sections(doc)
    assert carried == ["", "## Ground decoding: determinism, large frames", "kept 1",
                       "", "## Session 9: what we learned", "### detail", "kept 2"]


def test_derived_variants_are_what_their_docstring_says():
    rgb = np.array([[[200, 100, 50], [10, 20, 30]], [[255, 255, 255], [0, 0, 0]]], np.uint8)
    assert variant(rgb, "wb")[0, 0].tolist() == [164, 100, 61]           # R x 0.82, B x 1.22
    assert variant(rgb, "wb")[1, 0].tolist() == [209, 255, 255]          # clipped, not wrapped
    luma = variant(rgb, "luma")
    assert luma.shape == (2, 2) and luma[0, 0] == round(float(rgb[0, 0] @ LUMA))
    desat = variant(rgb, "desat").astype(int)
    assert abs(desat[0, 0] - luma[0, 0]).max() < abs(rgb[0, 0].astype(int) - luma[0, 0]).max() * 0.45
    assert variant(rgb, "half").shape == (1, 1, 3)
    assert shifted(np.zeros((20, 30), np.uint8)).shape == (16, 26)


def test_derived_sets_shift_grey_off_the_grid_and_recolour_colour(tmp_path):
    grey = pixels(GREY)
    odd = derive(GREY, "shift3")
    assert odd.shape == (grey.shape[0] - 3, grey.shape[1] - 3) and (odd == grey[3:, 3:]).all()
    from evaluation.variants import write_set
    written = write_set(DATA, "wb", tmp_path / "color_wb", limit=2)     # floors.json is not an image
    assert [p.name for p in written] == ["mastcam_rgb.png", "navcam_gray.png"]
    rgb = np.asarray(Image.open(DATA / "mastcam_rgb.png").convert("RGB"))
    assert (np.asarray(Image.open(written[0])) == variant(rgb, "wb")).all()


def test_derived_variants_help_prints_the_usage_and_writes_nothing(tmp_path):
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "scripts.make_variants", "--help", str(DATA), str(tmp_path)], cwd=root,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("Harder validation sets")   # not a list of folders written
    assert list(tmp_path.iterdir()) == []


def test_reference_oracle_finds_a_shifted_copy_and_nothing_in_a_flat_image():
    x = pixels(GREY).astype(np.float64)
    image, copy = x[16:144, 16:144], x[16 + 7:144 + 7, 16 - 3:144 - 3]        # image[i, j] = copy[i - 7, j + 3]
    assert global_shift(image, copy) == (-7, 3)
    mean_only = (detail(blocks(image)) ** 2).sum((2, 3))
    inner = (slice(1, -1), slice(1, -1))                                         # blocks away from the border
    assert best_detail_sse(image, copy, search=2)[inner].max() < 1e-6
    flat = np.full_like(image, 100.0)
    assert np.allclose(best_detail_sse(image, flat, search=2), mean_only)       # no detail to lend


def test_avif_slow_preset_is_a_codec_and_remac_is_ranked_against_it(tmp_path):
    from evaluation import codecs
    from evaluation.codecs import AVIF
    if not codecs._works(AVIF(speed=2)):
        pytest.skip("libavif does not round-trip here")
    grey = pixels(GREY)
    fast, slow = AVIF(), AVIF(speed=2)
    assert (fast.name, slow.name) == ("AVIF", "AVIF s2")
    assert len(slow.encode(grey, 30)) != len(fast.encode(grey, 30))     # the speed reaches libavif
    out = tmp_path / "res"
    r = CliRunner().invoke(eval_main, [str(DATA), "--out", str(out), "--codecs", "REMAC,AVIF s2",
                                       "--qualities", "20,50,80,100"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    grey_set = json.loads((out / "summary.json").read_text())["data grey"]
    assert set(grey_set["bd_rate_psnr_vs_avif_s2"]) == {"REMAC"}
    assert "vs AVIF s2" in r.output
