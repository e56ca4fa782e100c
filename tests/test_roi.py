"""Regions of interest (remac-encode --roi; docs/FORMAT.md, "Quality map"): the header's map at its
documented bytes, tiles coded and decoded at their own quality bit-exactly, a higher PSNR inside the
region for more bytes, colour, rate control over the whole file, remac-info, and bad specs."""
import json
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

from remac.bitstream import container
from remac.bitstream.container import Header
from remac.bitstream.errors import FormatError, RemacError
from remac.ground_decoder.decode import decode, entropy_decode
from remac.rover_encoder.cli import encode_main
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import load_image
from remac.rover_encoder.info import main as info_main
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.roi import Region, parse
from tests.conftest import COLOUR, GREY, pixels, psnr

MODEL_ID = bytes.fromhex("0102030405060708")
BOX = (64, 64, 100, 60)                 # x, y, w, h: meets tiles 5 and 6 of the 4x4 grid of 64-px tiles
INSIDE = (slice(64, 124), slice(64, 164))
FAR = (slice(160, 256), slice(0, 256))  # rows of tiles the region does not meet


def usage(args, prog="remac-encode"):
    return CliRunner().invoke(encode_main, [str(a) for a in args], prog_name=prog)


def test_map_at_documented_bytes_and_round_trip():
    """flags bit 3, then K, K x q100 (u16), then 1 bit per tile for K = 1, MSB first, zero-padded."""
    h = Header(MODEL_ID, 300, 200, 1, 1, 8, 40, 64, 64, roi_levels=((6500, 0),), roi_map=(0, 1, 1, 0, 0) + (0,) * 15)
    payload = h.pack()
    assert payload[20] == 0x08
    assert payload[21] == 1 and payload[22:24] == struct.pack(">H", 6500)
    assert payload[24:] == bytes([0b01100000, 0, 0]) and len(payload) == 21 + 1 + 2 + 3
    back = Header.unpack(payload)
    assert back == h and [back.tile_q100(i) for i in range(3)] == [4000, 6500, 6500]
    # planar: levels carry chroma_q100 too; Y grid (5x2) then the chroma grid (3x1), 2 bits each for K = 2
    c = Header(MODEL_ID, 300, 100, 3, 3, 8, 40, 64, 64, planes=1, chroma_shift=1, chroma_q100=5500,
               roi_levels=((6500, 8000), (9000, 10000)), roi_map=(1, 2) + (0,) * 8 + (2, 0, 0))
    payload = c.pack()
    assert Header.unpack(payload) == c and payload[23] == 2
    assert payload[24:32] == struct.pack(">HHHH", 6500, 8000, 9000, 10000)
    assert payload[32:] == bytes([0b01100000, 0, 0b00001000, 0]) and c.tile_count == 16
    assert [c.tile_q100(i) for i in (0, 1, 2, 10, 11, 12, 13, 14)] == [6500, 9000, 4000, 10000, 5500, 5500, 10000, 5500]


@pytest.mark.parametrize("edit,message", [
    (lambda p: p[:-1], "expected"),                                     # map cut short
    (lambda p: p[:-1] + b"\x01", "padding bits"),
    (lambda p: p[:21] + b"\x00" + p[22:], "1..15 levels"),
    (lambda p: p[:26] + b"\xc0" + p[27:], "or a level above 2"),        # entry 0 = 3, levels 1..2 only
    (lambda p: p[:22] + struct.pack(">H", 10001) + p[24:], "levels .* out of range"),
])
def test_bad_maps_are_refused_by_name(edit, message):
    payload = Header(MODEL_ID, 300, 150, 1, 1, 8, 40, 64, 64, roi_levels=((6500, 0), (9000, 0)),
                     roi_map=(0, 1) + (0,) * 13).pack()        # 15 tiles x 2 bits: 2 padding bits
    with pytest.raises(FormatError, match=message):
        Header.unpack(edit(payload))


@pytest.fixture(scope="module")
def grey():
    img = load_image(GREY)
    plain = encode(img, EncodeOptions(4000, tile=64), keep_tiles=True)
    roi = encode(img, EncodeOptions(4000, tile=64, roi=(Region(*BOX),)), keep_tiles=True)
    return img, plain, roi


def test_region_tiles_at_their_quality_the_rest_unchanged(grey):
    _, plain, roi = grey
    h = roi.header
    assert h.q100 == 4000 and h.roi_levels == ((6500, 0),)
    assert [i for i in range(16) if h.tile_q100(i) != 4000] == [i for i in range(16) if h.tile_q100(i) == 6500] == [5, 6]
    assert len(roi.data) > len(plain.data)
    # each tile is coded on its own: without references, the tiles the region misses are the same words
    a, b = container.read(plain.data).tiles, container.read(roi.data).tiles
    same = [i for i in range(16) if np.array_equal(a[i], b[i])]
    if roi.entropy_ref is None and plain.entropy_ref is None:
        assert same == [i for i in range(16) if i not in (5, 6)]
    # the ground reads exactly what the rover coded, tile by tile at its quality
    _, _, _, tiles, lost, problems = entropy_decode(roi.data)
    assert not lost and not problems
    for i, (z_hat, mu16, idx, y_hat_g) in enumerate(roi.tiles):
        assert np.array_equal(tiles[i][0], z_hat) and np.array_equal(tiles[i][2], idx)
        assert np.array_equal(tiles[i][3], y_hat_g)


def test_region_decodes_sharper(grey):
    _, plain, roi = grey
    ref = pixels(GREY)
    out_plain, out_roi = decode(plain.data, threads=1).image, decode(roi.data, threads=1).image
    assert psnr(ref[INSIDE], out_roi[INSIDE]) > psnr(ref[INSIDE], out_plain[INSIDE]) + 2.0
    assert abs(psnr(ref[FAR], out_roi[FAR]) - psnr(ref[FAR], out_plain[FAR])) < 0.3


def test_no_region_above_the_stream_quality_is_a_plain_stream(grey):
    img, plain, _ = grey
    same = encode(img, EncodeOptions(4000, tile=64, roi=(Region(*BOX, q100=4000),)))
    assert same.data == plain.data and not same.header.roi_levels


def test_colour_region_chroma_follows():
    img = load_image(COLOUR)
    roi = encode(img, EncodeOptions(4000, tile=64, roi=(Region(*BOX),)))
    plain = encode(img, EncodeOptions(4000, tile=64))
    h = roi.header
    assert h.roi_levels == ((6500, 8000),) and h.chroma_q100 == 5500
    assert len(roi.data) > len(plain.data)
    ref = pixels(COLOUR)
    out_roi, out_plain = decode(roi.data, threads=1).image, decode(plain.data, threads=1).image
    assert psnr(ref[INSIDE], out_roi[INSIDE]) > psnr(ref[INSIDE], out_plain[INSIDE]) + 2.0


def test_target_bytes_with_region_fits_the_whole_file(tmp_path):
    out = tmp_path / "t.rmc"
    r = CliRunner().invoke(encode_main, [str(GREY), "--tile", "64", "--target-bytes", "6000", "--roi", "64,64,100,60",
                                         "--json", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert out.stat().st_size == info["bytes"] <= 6000 and info["bytes"] >= 0.97 * 6000
    levels = info["roi"]["levels"]
    assert len(levels) == 1 and levels[0]["quality"] == min(100, info["quality"] + 25)
    # a region with its own quality keeps it while the search moves the rest
    r = CliRunner().invoke(encode_main, [str(GREY), "--tile", "64", "--target-bytes", "6000", "--roi",
                                         "64,64,100,60:90", "--json", "-o", str(out)], catch_exceptions=False)
    info = json.loads(r.stdout)
    assert info["bytes"] <= 6000 and info["roi"]["levels"][0]["quality"] == 90 and info["quality"] < 90


def test_info_shows_the_map(grey, tmp_path):
    path = tmp_path / "roi.rmc"
    path.write_bytes(grey[2].data)
    r = CliRunner().invoke(info_main, [str(path)], catch_exceptions=False)
    assert r.exit_code == 0
    assert "roi         quality map per tile ('.' = quality 40): 1 = quality 65, 2 tiles" in r.output
    assert "\n    ....\n    .11.\n    ....\n    ....\n" in r.output
    d = json.loads(CliRunner().invoke(info_main, [str(path), "--json"], catch_exceptions=False).stdout)
    assert d["roi"]["map"] == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert d["roi"]["levels"] == [{"level": 1, "quality": 65.0, "tiles": 2}]
    assert [t["quality"] for t in d["tiles"][4:8]] == [40, 65, 65, 40]
    plain = tmp_path / "plain.rmc"
    plain.write_bytes(grey[1].data)
    assert json.loads(CliRunner().invoke(info_main, [str(plain), "--json"]).stdout)["roi"] is None


@pytest.mark.parametrize("spec,error", [
    ("1,2,3", "'--roi': '1,2,3' is not x,y,w,h or x,y,w,h:q"),
    ("1,2,3,4:abc", "is not x,y,w,h or x,y,w,h:q"),
    ("-1,2,3,4", "is not x,y,w,h or x,y,w,h:q"),
    ("0,0,0,10", "width and height must be at least 1 pixel"),
    ("0,0,10,10:101", "quality 101 is out of range 0..100"),
])
def test_malformed_regions_are_usage_errors(spec, error):
    r = usage([GREY, "--roi", spec])
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1 and error in r.stderr, r.stderr
    assert "Traceback" not in r.output


def test_other_bad_regions_are_one_line_errors(tmp_path):
    r = usage([GREY, "-q", "60", "--roi", "0,0,10,10:30"])
    assert r.exit_code == 2 and r.stderr.splitlines() == [
        "remac-encode: error: --roi 0,0,10,10:30: quality 30 is below the stream's 60 (a region is coded at the "
        "higher of the two) (see remac-encode --help)"]
    r = usage([GREY, "--roi", "200,0,100,10", "-o", tmp_path / "x.rmc"])
    assert r.exit_code == 1 and r.stderr.splitlines() == [
        f"remac-encode: error: {GREY}: --roi 200,0,100,10 lies outside the 256x256 image"]
    assert not (tmp_path / "x.rmc").exists()
    base = tmp_path / "b.rmc"
    assert usage([GREY, "-q", "5", "-o", base]).exit_code == 0
    r = usage([GREY, "--refine", base, "--roi", "0,0,10,10"])
    assert r.exit_code == 2 and "--roi cannot be coded in a refinement layer" in r.stderr
    mapped = tmp_path / "m.rmc"
    assert usage([GREY, "-q", "5", "--roi", "0,0,10,10", "-o", mapped]).exit_code == 0
    r = usage([GREY, "--refine", mapped, "-q", "50", "-o", tmp_path / "r.rmc"])
    assert r.exit_code == 1 and "codes regions of interest (a quality map): refinement layers of such a stream " \
                                "are not supported" in r.stderr and len(r.stderr.splitlines()) == 1


def test_parse_and_api_checks():
    assert parse(" 1, 2,3,4 : 50.25") == Region(1, 2, 3, 4, 5025)
    assert str(parse("1,2,3,4")) == "1,2,3,4" and Region(1, 2, 3, 4).quality_at(9000) == 10000
    with pytest.raises(RemacError, match="refinement layer"):
        EncodeOptions(roi=(Region(0, 0, 1, 1),), refine=("x.rmc",))
    with pytest.raises(RemacError, match="at most 15 distinct"):
        EncodeOptions(9000, roi=tuple(Region(0, 0, 1, 1, 9000 + q) for q in range(16)))


def test_api_takes_regions():
    from remac import rover_encoder
    crop = pixels(GREY)[:128, :128]
    data = rover_encoder.encode_image(crop, quality=30, tile=64, use_refs=False, roi=["0,0,10,10"])
    h = container.read(data).header
    assert h.roi_levels == ((5500, 0),) and h.roi_map == (1, 0, 0, 0)
    assert rover_encoder.encode_image(crop, quality=30, tile=64, use_refs=False, roi=[(64, 64, 5, 5, 90)]) != data
