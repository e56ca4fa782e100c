"""remac-info: a stream's structure from its bytes alone, damaged tiles named, exit codes."""
import json

import pytest
from click.testing import CliRunner

from remac.bitstream import modelfile
from remac.rover_encoder.info import main as info_main
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import load_image
from tests.conftest import DATA, GOLDEN_GREY, GREY
from remac.rover_encoder.options import EncodeOptions


@pytest.fixture(scope="module")
def two_tiles(default_library):
    img = load_image(GREY)
    img.pixels = img.pixels[:, :64, :128]           # two 64x64 tiles
    img.metadata.text["Title"] = "sol 1234"
    return encode(img, EncodeOptions(4050, library=default_library, tile=64, keep_refs=True))


def invoke(args):
    return CliRunner().invoke(info_main, [str(a) for a in args], catch_exceptions=False)


def test_intact_stream_human_and_json(tmp_path, two_tiles, default_library):
    f = tmp_path / "a.rmc"
    f.write_bytes(two_tiles.data)
    r = invoke([f])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    n = len(two_tiles.data)
    assert lines[0] == f"{f}: REMAC .rmc 4.0, 128x64 grey, 8-bit, quality 40.5, {n} bytes ({round(n / 1024, 4)} bpp)"
    grey_id = modelfile.load("grey").model_id.hex()
    assert f"  model       {grey_id} (grey)" in lines
    assert f"  library     {default_library.library_id} (the shipped default)" in lines
    assert f"  entropy ref {two_tiles.entropy_ref}" in lines and "  metadata    text: Title" in lines
    assert sum("CRC ok" in line for line in lines) == 2
    d = json.loads(invoke([f, "--json"]).stdout)
    assert d["ok"] and d["intact"] and d["version"] == "4.0" and d["quality"] == 40.5
    assert (d["width"], d["height"], d["bit_depth"], d["model"]) == (128, 64, 8, "grey")
    assert d["decoder_ref_id"] == two_tiles.decoder_ref and d["metadata"]["text"] == {"Title": "sol 1234"}
    assert [t["status"] for t in d["tiles"]] == ["ok", "ok"]
    # tile segment bytes: 12 framing + 4 index + 4 per word, adding up with the rest to the file
    meta_segment = 12 + len(b"\x01\x05Title\x00\x00\x00\x08sol 1234")
    assert 8 + 12 + 21 + 24 + meta_segment + sum(t["bytes"] for t in d["tiles"]) == d["bytes"]


def test_damaged_stream_names_its_tiles_and_exits_3(tmp_path, two_tiles):
    b = bytearray(two_tiles.data)
    b[-30] ^= 0xFF                                  # inside the last TILE segment
    (tmp_path / "crc.rmc").write_bytes(bytes(b))
    (tmp_path / "cut.rmc").write_bytes(two_tiles.data[:-60])
    r = invoke([tmp_path / "crc.rmc", "--json"])
    assert r.exit_code == 3
    d = json.loads(r.stdout)
    assert [t["status"] for t in d["tiles"]] == ["ok", "CRC error"] and not d["intact"]
    r = invoke([tmp_path / "cut.rmc"])
    assert r.exit_code == 3 and "MISSING" in r.stdout and "stream truncated" in r.stdout
    # a batch: intact + damaged -> 3; + unreadable -> 1, each unreadable file one line
    (tmp_path / "ok.rmc").write_bytes(two_tiles.data)
    assert invoke([tmp_path / "ok.rmc", tmp_path / "crc.rmc"]).exit_code == 3
    (tmp_path / "text.rmc").write_bytes(b"hello")
    r = invoke([tmp_path / "ok.rmc", tmp_path / "text.rmc", tmp_path / "nope.rmc"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.splitlines() == [f"remac-info: error: {tmp_path / 'text.rmc'}: not a REMAC .rmc stream (bad signature)",
                                     f"remac-info: error: {tmp_path / 'nope.rmc'}: no such file",
                                     "remac-info: 2 of 3 files failed"]


def test_version_1_stream_and_directories(tmp_path):
    r = invoke([GOLDEN_GREY, "--json"])
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["version"] == "1.0" and d["metadata"] is None and d["intact"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "g.rmc").write_bytes(GOLDEN_GREY.read_bytes())
    (tmp_path / "notes.txt").write_text("not a stream")
    r = invoke([tmp_path, "--json"])
    assert r.exit_code == 0 and [json.loads(x)["input"] for x in r.stdout.splitlines()] == [str(tmp_path / "sub" / "g.rmc")]
    (tmp_path / "empty").mkdir()
    r = invoke([tmp_path / "empty"])
    assert r.exit_code == 1 and r.stderr == f"remac-info: error: {tmp_path / 'empty'}: is a directory with no .rmc files in it\n"


def test_files_that_share_a_name_stem_are_all_reported(tmp_path):
    # info writes nothing, so a.rmc and a.bak (or a file given twice) are not rival outputs
    (tmp_path / "a.rmc").write_bytes(GOLDEN_GREY.read_bytes())
    (tmp_path / "a.bak").write_bytes(GOLDEN_GREY.read_bytes())
    r = invoke([tmp_path / "a.rmc", tmp_path / "a.bak", tmp_path / "a.rmc", "--json"])
    assert r.exit_code == 0 and [json.loads(x)["status"] for x in r.stdout.splitlines()] == ["ok"] * 3
