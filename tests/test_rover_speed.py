"""Issue 30's rover speed work: the entropy model's trunk shared by the with- and without-reference
passes, numpy's BLAS threads held to --threads, and the rover benchmark script."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from remac.bitstream import intnet, latent, spec
from remac.rover_encoder.analysis import gain_for_quality
from remac.rover_encoder.entry import threads_option
from remac.rover_encoder.imageio import load_image
from remac.rover_encoder.prepared import Prepared
from tests.conftest import COLOUR, GREY
from remac.rover_encoder.options import EncodeOptions

ROOT = Path(__file__).resolve().parent.parent


def test_shared_trunk_is_bit_identical_to_the_reference_path(default_library):
    """Every tile of the test images, with and without the reference: passing the one trunk gives
    the same words, means, scale indices and symbols as latent.encode computing it itself."""
    for path in (GREY, COLOUR):
        img = load_image(path)
        for channel in range(img.pixels.shape[0]):
            img_c = type(img)(img.pixels[channel:channel + 1], 1, img.bit_depth)
            p = Prepared(img_c, EncodeOptions(library=default_library, tile=128))
            model, q100 = p.model, 75 * spec.QUALITY_STEPS
            gain, gain_int = gain_for_quality(model, q100), spec.gain_int_at(model.gain_int, q100)
            for window in p.windows:
                z = window.crop_z(p.analyzer.hyper(window.y_window, gain))
                z_hat = np.clip(np.floor(z.astype(np.float64) + 0.5), -spec.Z_CLIP, spec.Z_CLIP).astype(np.int64)
                hidden = intnet.trunk(model.net, z_hat)
                for r in (spec.ref_input(p.stats, gain_int), spec.ref_input(None, gain_int)):
                    args = (model.net, z_hat, r, window.y * gain[:, None, None], model.z_tables, model.y_tables,
                            model.floors_at(q100), 0.05, model.spatial_at(q100))
                    for a, b in zip(latent.encode(*args), latent.encode(*args, hidden)):
                        assert np.array_equal(a, b)


@pytest.mark.parametrize("argv,threads", [([], 1), (["a.png", "--threads", "3"], 3), (["--threads=2", "a.png"], 2),
                                          (["--threads", "x"], 1), (["--threads"], 1), (["--threads", "0"], 1)])
def test_threads_option_is_read_from_the_command_line(argv, threads):
    assert threads_option(argv) == threads


@pytest.mark.skipif(not Path("/proc/self/task").exists() or (os.cpu_count() or 1) < 2, reason="needs Linux, 2+ cores")
def test_blas_threads_follow_the_threads_option():
    """The entry point sets OpenBLAS's pool before numpy loads: one OS thread with --threads 1,
    more with --threads 2 (numpy's OpenBLAS otherwise starts one per core whatever --threads says)."""
    code = ("import os, sys\nfrom remac.rover_encoder.entry import limit_blas_threads\n"
            "limit_blas_threads(sys.argv[1:])\nimport numpy\nnumpy.ones((64, 64)) @ numpy.ones((64, 64))\n"
            "print(len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    count = lambda n: int(subprocess.run([sys.executable, "-c", code, "in.png", "--threads", str(n)], env=env,
                                         capture_output=True, text=True, check=True).stdout)
    assert count(1) == 1
    assert count(2) > 1


def test_rover_benchmark_runs_on_a_tiny_frame(tmp_path):
    """scripts.bench_rover end to end on 0.01-MP frames tiled from tests/data (no ../shared)."""
    for sub, src in (("gray_native", GREY), ("color", COLOUR)):
        (tmp_path / "val" / sub).mkdir(parents=True)
        (tmp_path / "val" / sub / src.name).write_bytes(src.read_bytes())
    doc = tmp_path / "B.md"
    doc.write_text("# Benchmarks\n\n## Other\n\ntext\n")
    r = subprocess.run([sys.executable, "-m", "scripts.bench_rover", "--sizes", "0.01", "--repeat", "1",
                        "--val", str(tmp_path / "val"), "--results", str(tmp_path / "res"), "--report", str(doc)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    text = doc.read_text()
    assert "## Other" in text and "## Rover: time per stage and the MAC limit" in text
    for stage in ("start-up", "g_a", "h_a", "h_s", "context slice 1", "RDO", "coding", "write", "encode / GEMM"):
        assert stage in text, stage
    assert (tmp_path / "res" / "after.json").exists()


@pytest.mark.parametrize("path", [GREY, COLOUR])
def test_one_quality_analysis_streams_the_same_bytes(path, default_library):
    """Prepared at one quality (h_a straight after g_a, each window dropped to its tile) writes the
    same stream as the analysis kept for any quality, and refuses another quality."""
    from remac.bitstream.errors import RemacError
    from remac.rover_encoder.encode import prepare
    img = load_image(path)
    for q in (2000, 7550):
        once = prepare(img, EncodeOptions(q, library=default_library, tile=128), once=True)
        assert once.encode(q).data == prepare(img, EncodeOptions(library=default_library, tile=128)).encode(q).data
    with pytest.raises(RemacError, match="analysed for quality"):
        prepare(img, EncodeOptions(3000, library=default_library, tile=128), once=True).encode(3100)


@pytest.mark.parametrize("path", [GREY, COLOUR])
def test_source_image_keeps_integer_samples_and_converts_windows_exactly(path):
    """A file's image holds its samples as read; a window's float pixels are exactly the whole frame's."""
    img = load_image(path)
    assert img.samples.dtype == np.uint8 and img.peak == 255
    whole = img.pixels
    assert whole.dtype == np.float32 and whole.shape == (img.channels, img.height, img.width)
    assert np.array_equal(img.window(10, 100, 30, 200), whole[:, 10:100, 30:200])
    img.pixels = whole[:, :64, :64]             # float pixels set directly (tests, library builds)
    assert img.peak is None and img.window(0, 64, 0, 64) is not None and img.width == 64


def test_plane_input_takes_the_tiles_it_places(default_library):
    """The ground hands each plane's latents to the map and drops them (memory during synthesis)."""
    pytest.importorskip("torch")
    from remac.ground_decoder.decode import entropy_decode, ground_model, plane_input
    from remac.rover_encoder.encode import encode
    data = encode(load_image(COLOUR), EncodeOptions(5000, library=default_library, tile=128)).data
    parsed, model, library, tiles, lost, _ = entropy_decode(data, default_library, latents_only=True)
    planes = parsed.header.coded_planes()
    before = len(tiles)
    plane, offset = planes[0]
    y_map, _, _ = plane_input(plane, offset, tiles, lost, model, library, ground_model(model))
    assert len(tiles) == before - plane.tile_count and all(i >= offset + plane.tile_count for i in tiles)
    assert y_map.shape[0] == model.m
