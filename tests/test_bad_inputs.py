"""Every CLI meets bad input with one line on stderr naming the file, a non-zero exit, and no
partial output. The table in docs/ROBUSTNESS.md lists what each case gets."""
import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from remac.ground_decoder.cli import decode_main
from remac.rover_encoder.cli import encode_main
from tests.conftest import GREY


def make(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def png(array, **kw):
    buf = io.BytesIO()
    Image.fromarray(array, **kw).save(buf, "PNG")
    return buf.getvalue()


def invoke(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


REFUSED = {
    "empty.png": (b"", "not a readable image"),
    "text.png": (b"hello, world\n" * 10, "not a readable image"),
    "truncated.png": (GREY.read_bytes()[:3000], "cannot decode image"),
    "truncated.jpg": (None, "cannot decode image"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_encoder_refuses_unreadable_images(tmp_path, name):
    data, message = REFUSED[name]
    if data is None:
        buf = io.BytesIO()
        Image.open(GREY).save(buf, "JPEG", quality=90)
        data = buf.getvalue()[:1500]
    src = make(tmp_path, name, data)
    r = invoke(encode_main, [src, "-o", tmp_path / "out.rmc"])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and name in r.stderr and message in r.stderr
    assert not (tmp_path / "out.rmc").exists() and not list(tmp_path.glob("*.part"))


def test_directory_and_missing_inputs(tmp_path):
    r = invoke(encode_main, [tmp_path, "-o", tmp_path / "o.rmc"])
    assert r.exit_code == 1 and "is a directory" in r.stderr
    r = invoke(decode_main, [tmp_path / "none.rmc"])
    assert r.exit_code == 1 and "none.rmc: no such file" in r.stderr


@pytest.mark.parametrize("kind", ["palette", "rgba", "la", "16bit", "1x1", "bilevel"])
def test_encoder_accepts_unusual_but_valid_images(tmp_path, kind):
    grey = np.asarray(Image.open(GREY))[:40, :50]
    im = {"palette": lambda: Image.fromarray(grey).convert("P"),
          "rgba": lambda: Image.fromarray(np.dstack([grey] * 3 + [grey])),
          "la": lambda: Image.fromarray(np.dstack([grey, grey])),
          "16bit": lambda: Image.fromarray(grey.astype(np.uint16) * 257),
          "1x1": lambda: Image.fromarray(grey[:1, :1]),
          "bilevel": lambda: Image.fromarray(grey).convert("1")}[kind]()
    src = tmp_path / f"{kind}.png"
    im.save(src)
    r = invoke(encode_main, [src, "-o", tmp_path / "o.rmc"])
    assert r.exit_code == 0, r.output
    if kind in ("rgba", "la"):
        assert "alpha channel dropped" in r.stderr
    r = invoke(decode_main, [tmp_path / "o.rmc", "-o", tmp_path / "o.png"])
    assert r.exit_code == 0, r.output
    out = Image.open(tmp_path / "o.png")
    assert out.size == im.size


def test_unwritable_output_leaves_nothing(tmp_path):
    r = invoke(encode_main, [GREY, "-o", tmp_path / "no" / "such" / "dir" / "x.rmc"])
    assert r.exit_code == 1 and "does not exist" in r.stderr


def test_existing_output_is_replaced_atomically(tmp_path):
    out = tmp_path / "x.rmc"
    out.write_bytes(b"old")
    assert invoke(encode_main, [GREY, "-o", out]).exit_code == 0
    assert out.read_bytes().startswith(b"\x89RMC")


def test_decoder_refuses_images_and_empty_files(tmp_path):
    r = invoke(decode_main, [GREY])
    assert r.exit_code == 1 and "an image" in r.stderr and "remac-encode" in r.stderr
    r = invoke(decode_main, [make(tmp_path, "e.rmc", b"")])
    assert r.exit_code == 1 and "not a .rmc stream" in r.stderr


def test_unknown_output_extension_is_written_as_png(tmp_path):
    invoke(encode_main, [GREY, "-o", tmp_path / "g.rmc"])
    r = invoke(decode_main, [tmp_path / "g.rmc", "-o", tmp_path / "g.xyz"])
    assert r.exit_code == 0                      # unknown extension -> PNG bytes, as documented
    assert (tmp_path / "g.xyz").read_bytes().startswith(b"\x89PNG")
