"""Batch pipelines: --jobs (process pool), JSON lines, progress bar, summaries, and the Python API."""
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from remac.rover_encoder.cli_support import run_batch
from remac.bitstream.errors import RemacError
from remac.ground_decoder.cli import decode_main
from remac.rover_encoder.cli import encode_main
from tests.conftest import COLOUR, GREY, RGB3, pixels, psnr

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


def slow_work(inp, out):
    """Module level, so that worker processes can run it: the first inputs take longest."""
    if inp == "bad":
        raise RemacError("bad: no good")
    time.sleep(0.2 / int(inp))
    return {"output": out, "value": int(inp) ** 2, "summary": f"{inp} done"}


def test_run_batch_workers_keep_input_order_and_carry_on(capsys):
    jobs = [(x, f"{x}.out") for x in ("1", "2", "bad", "3", "4")]
    with pytest.raises(SystemExit) as exit_:
        run_batch("prog", jobs, slow_work, as_json=True, quiet=False, workers=2)
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in out.splitlines()]
    assert [d["file"] for d in lines] == ["1", "2", "bad", "3", "4"]
    assert [d["status"] for d in lines] == ["ok", "ok", "failed", "ok", "ok"]
    assert [d.get("value") for d in lines] == [1, 4, None, 9, 16]
    assert all(d["seconds"] >= 0 for d in lines) and lines[0]["seconds"] >= 0.15
    assert "prog: error: bad: no good" in err and "prog: 1 of 5 files failed" in err


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    jobs = [("4", "4.out"), ("8", "8.out")]
    run_batch("prog", jobs, slow_work, as_json=False, quiet=False)
    assert "file/s" not in capsys.readouterr().err                   # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    run_batch("prog", jobs, slow_work, as_json=False, quiet=False)
    err = capsys.readouterr().err
    assert "prog: 100%" in err and "2/2" in err and "prog: all 2 files done" in err
    for flags in ({"as_json": True, "quiet": False}, {"as_json": False, "quiet": True}):
        run_batch("prog", jobs, slow_work, **flags)
        assert "100%" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """A directory of two images and a non-image, encoded with -j 1 and with -j 2."""
    tmp = tmp_path_factory.mktemp("batch")
    src = tmp / "in"
    (src / "sub").mkdir(parents=True)
    Image.open(GREY).crop((0, 0, 64, 64)).save(src / "a.png")
    Image.open(COLOUR).crop((0, 0, 96, 64)).save(src / "sub" / "b.png")
    (src / "c.png").write_bytes(b"not an image")
    results = {}
    for jobs in (1, 2):
        out = tmp / f"j{jobs}"
        results[jobs] = out, run(encode_main, [src, "-o", str(out) + "/", "-j", jobs, "-q", 40, "--json", "--keep-refs"])
    return tmp, results


def test_encode_jobs_two_equals_jobs_one(encoded):
    outs = {}
    for jobs, (out, r) in encoded[1].items():
        assert r.exit_code == 1 and "1 of 3 files failed" in r.stderr
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        assert [Path(d["file"]).name for d in lines] == ["a.png", "c.png", "b.png"]
        assert [d["status"] for d in lines] == ["ok", "failed", "ok"]
        assert lines[0]["refs"]["entropy"] and lines[0]["quality"] == 40 and lines[0]["bytes"] > 0
        outs[jobs] = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.rmc")}
    assert sorted(outs[2]) == ["a.rmc", "sub/b.rmc"] and outs[1] == outs[2]


def _decode_batch(encoded, jobs):
    """Decode the -j 2 batch with one stream damaged (bytes after its end): all written, exit 3,
    reported in input order."""
    tmp, results = encoded
    src = tmp / f"damaged{jobs}"
    for name in ("a.rmc", "sub/b.rmc"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        data = (results[2][0] / name).read_bytes()
        (src / name).write_bytes(data + b"\0" * 5 if name == "a.rmc" else data)
    out = tmp / f"dec{jobs}"
    r = run(decode_main, [src, "-o", str(out) + "/", "-j", jobs, "--json"])
    assert r.exit_code == 3, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(Path(d["file"]).name, d["status"]) for d in lines] == [("a.rmc", "damaged"), ("b.rmc", "ok")]
    assert lines[1]["bytes"] == (src / "sub" / "b.rmc").stat().st_size and lines[1]["quality"] == 40
    assert "1 of 2 files were damaged" in r.stderr
    return {name: (out / name).read_bytes() for name in ("a.dec.png", "sub/b.dec.png")}


def test_decode_batch_reports_in_input_order(encoded):
    images = _decode_batch(encoded, 1)
    assert np.asarray(Image.open(io.BytesIO(images["sub/b.dec.png"]))).shape == (64, 96, 3)


@pytest.mark.slow
def test_decode_jobs_two_equals_jobs_one(encoded):
    """Two PyTorch worker processes (~10 s to start on a busy 2-core machine): the same images."""
    assert _decode_batch(encoded, 2) == _decode_batch(encoded, 1)


def test_python_api(tmp_path):
    from remac import ground_decoder
    from remac import rover_encoder
    a = pixels(GREY)[:64, :128]
    Image.fromarray(a).save(tmp_path / "g.png")
    data = rover_encoder.encode_image(a, quality=60)
    info = rover_encoder.encode_file(tmp_path / "g.png", quality=60)
    assert (tmp_path / "g.rmc").read_bytes() == data and info["bytes"] == len(data) and info["quality"] == 60
    assert info["output"] == str(tmp_path / "g.rmc")
    assert 0.97 * 3000 <= len(rover_encoder.encode_image(pixels(GREY), target_bytes=3000)) <= 3000
    assert len(rover_encoder.encode_image(pixels(RGB3), bpp=0.3)) <= 0.3 * 256 * 256 / 8
    with pytest.raises(RemacError, match="expected"):
        rover_encoder.encode_image(a.astype(np.float32))
    with pytest.raises(RemacError, match="below the smallest stream"):
        rover_encoder.encode_image(a, target_bytes=100)
    sixteen = rover_encoder.encode_image(a.astype(np.uint16) * 257, quality=60, use_refs=False)
    out = ground_decoder.decode_image(data)
    assert out.shape == a.shape and out.dtype == np.uint8 and psnr(a, out) > 20
    assert ground_decoder.decode_image(sixteen).dtype == np.uint16
    d = ground_decoder.decode_file(tmp_path / "g.rmc", reduce=2)
    assert d["output"] == str(tmp_path / "g.dec.png") and d["quality"] == 60 and not d["damaged"]
    assert Image.open(tmp_path / "g.dec.png").size == (32, 16)


def test_package_exports_are_lazy_and_torch_free():
    code = ("import sys\n"
            "from remac import rover_encoder, ground_decoder\n"
            "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n"
            "assert callable(rover_encoder.encode_image) and callable(ground_decoder.decode_file)\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
