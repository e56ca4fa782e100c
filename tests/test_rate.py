"""Rate control (--target-bytes / --bpp) and the split analysis graph it relies on."""
import json

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from remac.bitstream import modelfile
from remac.ground_decoder.decode import entropy_decode
from remac.rover_encoder import analysis
from remac.rover_encoder.cli import encode_main
from remac.rover_encoder.prepared import RATE_TOLERANCE
from remac.rover_encoder.encode import prepare
from remac.rover_encoder.imageio import load_image
from tests.conftest import COLOUR, GREY
from remac.rover_encoder.options import EncodeOptions


@pytest.mark.parametrize("name,precision,path", [("grey", "int8", GREY), ("grey", "float", COLOUR)])
def test_split_analysis_is_the_whole_graph_bit_for_bit(name, precision, path):
    """g_a and h_a cut from the shipped graph (rover_encoder.onnx_graph) give exactly its y, z and
    shallow: streams are the same as from the uncut graph, and rate control may run h_a alone."""
    model = modelfile.load(name)
    blob = (analysis.ASSETS / name / analysis.ENCODER_FILES[precision]).read_bytes()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    whole = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    split = analysis.Analyzer(model, precision=precision)
    x = load_image(path).pixels[:1, :192, :256]      # colour: its first channel, as a plane
    y, shallow = split.analyse(x)
    for quality in (0, 37.5, 100):
        gain = analysis.gain_for_quality(model, round(quality * 100))
        wy, wz, ws = whole.run(None, {"x": analysis.pad_to_64(x)[None], "gain": gain.reshape(1, -1, 1, 1)})
        assert np.array_equal(wy[0], y) and np.array_equal(ws[0], shallow)
        assert np.array_equal(wz[0], split.hyper(y, gain))


@pytest.fixture(scope="module")
def prepared(default_library):
    return {p.stem: prepare(load_image(p), EncodeOptions(library=default_library)) for p in (GREY, COLOUR)}


@pytest.mark.parametrize("stem,fractions", [("navcam_gray", (0.1, 0.5, 0.9)), ("mastcam_rgb", (0.3, 0.7))])
def test_fit_never_over_and_within_tolerance(stem, fractions, prepared, default_library):
    p = prepared[stem]
    smallest, largest = len(p.encode(0).data), len(p.encode(10000).data)
    for fraction in fractions:
        budget = int(smallest + fraction * (largest - smallest))
        result = p.fit(budget)
        size = len(result.data)
        assert size <= budget
        assert size >= (1 - RATE_TOLERANCE) * budget, (budget, size, result.header.quality_value)
    # exactly the stream that quality gives, and it decodes
    assert result.data == p.encode(result.header.q100).data
    assert not entropy_decode(result.data, default_library)[4]
    assert p.fit(10 * largest).header.q100 == 10000          # more than quality 100 needs: 100
    assert len(p.fit(smallest).data) == smallest


def run(args):
    return CliRunner().invoke(encode_main, [str(a) for a in args], catch_exceptions=False)


def test_cli_target_bytes_and_bpp(tmp_path):
    r = run([GREY, COLOUR, "--target-bytes", 2000, "-o", str(tmp_path) + "/", "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [d["file"] for d in lines] == [str(GREY), str(COLOUR)]
    for d in lines:
        assert 0.97 * 2000 <= d["bytes"] <= 2000 == d["target_bytes"]
        assert (tmp_path / (d["file"].rsplit("/", 1)[1].rsplit(".", 1)[0] + ".rmc")).stat().st_size == d["bytes"]
        assert 0 < d["quality"] < 100 and d["bpp"] == round(8 * d["bytes"] / 256 ** 2, 4)
    r = run([GREY, "--bpp", 0.3, "-o", tmp_path / "b.rmc", "--json"])
    d = json.loads(r.stdout)
    budget = int(0.3 * 256 * 256 / 8)
    assert d["target_bytes"] == budget and 0.97 * budget <= d["bytes"] <= budget and d["bpp"] <= 0.3


def test_cli_budget_below_quality_zero_fails_in_one_line(tmp_path):
    out = tmp_path / "x.rmc"
    r = run([GREY, "--target-bytes", 300, "-o", out])
    assert r.exit_code == 1 and not out.exists() and list(tmp_path.iterdir()) == []
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"remac-encode: error: {GREY}: budget of 300 bytes is below "
                                                   "the smallest stream for this image (")


@pytest.mark.parametrize("args", [["--target-bytes", 2000, "-q", 50], ["--target-bytes", 2000, "--bpp", 0.2],
                                  ["--bpp", 0], ["--target-bytes", 0]])
def test_cli_rate_control_usage_errors(args):
    assert run([GREY, *args]).exit_code == 2
