"""Refinement layers (docs/FORMAT.md, "Refinement layers"): the header fields, the nested interval,
base + layers decoding to the one-shot stream's symbols, chains, and the errors that name IDs."""
import json
import struct
from dataclasses import replace

import numpy as np
import pytest

from remac.bitstream import container, layers, refine, spec
from remac.bitstream.container import Header
from remac.bitstream.errors import FormatError, RemacError
from remac.ground_decoder.decode import decode
from remac.rover_encoder.analysis import rover_model
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import load_image
from remac.rover_encoder.refine import encode_refinement
from tests.conftest import COLOUR, GREY
from remac.rover_encoder.options import EncodeOptions
from remac.bitstream.spec import quality_steps

MODEL_ID = bytes.fromhex("0102030405060708")


@pytest.fixture(scope="module")
def img():
    img = load_image(GREY)
    img.pixels = img.pixels[:, :128, :192]          # 2x3 tiles of 64: tile edges, spatial passes
    return img


@pytest.fixture(scope="module")
def chain(img):
    """A base at 20, layer 1 at 75, layer 2 at 90, and the one-shot streams at 75 and 90."""
    base = encode(img, EncodeOptions(2000, tile=64))
    r1 = encode_refinement(img, [base.data], EncodeOptions(7500))
    r2 = encode_refinement(img, [base.data, r1.data], EncodeOptions(9000))
    one75 = encode(img, EncodeOptions(7500, tile=64), keep_tiles=True)
    one90 = encode(img, EncodeOptions(9000, tile=64), keep_tiles=True)
    return base, r1, r2, one75, one90


def top_latents(streams):
    model = rover_model(1)
    base = container.read(streams[0]).header
    r = spec.ref_input(None, spec.gain_int_at(model.gain_int, base.q100))
    out = layers.decode_chain(streams, model, r)
    assert not out.problems
    return out.latents()


def test_refinement_header_fields_at_documented_offsets():
    """flags bit 2, then base_id (8), layer (1), base_q100 (2) after every other optional field."""
    base_id = bytes.fromhex("a1a2a3a4a5a6a7a8")
    h = Header(MODEL_ID, 192, 128, 1, 1, 8, 75, 64, 64, layer=2, base_id=base_id, base_q100=2050)
    payload = h.pack()
    assert len(payload) == 21 + 11
    assert payload[20] == 0x04
    assert payload[21:29] == base_id and payload[29] == 2 and payload[30:32] == struct.pack(">H", 2050)
    assert Header.unpack(payload) == h
    lib_id, ref = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")
    with_refs = replace(h, library_id=lib_id, decoder_ref_id=ref)
    payload = with_refs.pack()
    assert payload[20] == 0x06 and len(payload) == 21 + 24 + 11
    assert payload[21:45] == lib_id + bytes(8) + ref and payload[45:53] == base_id
    assert Header.unpack(payload) == with_refs
    plain = Header(MODEL_ID, 192, 128, 1, 1, 8, 75, 64, 64).pack()
    assert plain[20] == 0 and len(plain) == 21                  # streams of their own are unchanged
    short = h.pack()
    with pytest.raises(FormatError, match="layer is 0"):
        Header.unpack(short[:29] + b"\x00" + short[30:])
    with pytest.raises(FormatError, match="expected 32"):
        Header.unpack(h.pack()[:31])
    with pytest.raises(FormatError, match="refinement layer"):
        replace(h, flags=1, entropy_ref_id=ref, library_id=lib_id).pack()


def test_interval_holds_every_fine_rounding_of_the_base_bin():
    """compatible(): for any y the base's symbol can stand for (its bin, or up to 0.4 of a step past
    it where the rover's RDO moved the symbol towards zero), the one-shot rounding at the finer
    gain is inside lo .. hi."""
    rng = np.random.default_rng(1)
    n = 200_000
    g_a = rng.integers(50, 30_000, n)
    g_b = g_a * rng.uniform(0.7, 40, n)
    g_b = np.maximum(g_b.astype(np.int64), 1)
    mu_a, mu_b = rng.integers(-400, 400, n), rng.integers(-400, 400, n)
    y16 = rng.uniform(-3000, 3000, n)                    # 16 y, in units of 2**-12 gain
    r = (y16 * g_a / 4096 - mu_a) / 16
    s0 = np.floor(r + 0.5).astype(np.int64)                               # plain rounding at a ...
    past = np.abs(r) - (np.abs(s0) - 0.5)                                 # ... or one step to zero, as the
    s_a = np.where((s0 != 0) & (past < 0.4) & (rng.random(n) < 0.5), s0 - np.sign(s0), s0)   # rover's RDO can
    s_b = np.floor((y16 * g_b / 4096 - mu_b) / 16 + 0.5).astype(np.int64)
    iv = refine.compatible(s_a, mu_a, g_a, g_b, mu_b)
    lo, hi = iv.lo, iv.hi
    assert np.all(lo <= hi)
    assert np.mean((s_b >= lo) & (s_b <= hi)) > 0.9999      # float y at the bin edges aside
    one = lambda *v: np.array(v, np.int64)
    same = refine.compatible(one(0), one(0), one(4096), one(4096), one(0))      # same gain, same mean
    assert (same.lo[0], same.hi[0]) == (-1, 1)               # 0, and the two bins its widened edges reach
    assert same.weight(one(-1, 0, 1)[None]).tolist() == [[8 * 4096, 4 * 16 * 4096, 8 * 4096]]
    finer = refine.compatible(one(1), one(0), one(4096), one(4 * 4096), one(0))   # 4x finer: bin 1 = 4 .. 7.x
    assert (finer.lo[0], finer.hi[0]) == (2, 8)
    # base bin [8, 24) * 4 = [32, 96), widened up to 128; fine bin s = [16 s - 8, 16 s + 8); weights
    # = length inside the widened interval + 3 x length inside the bin itself (units of G_a)
    assert (finer.weight(np.arange(2, 9)[None])[0] // 4096).tolist() == [32, 64, 64, 64, 40, 16, 8]


def test_restricted_units_round_trip_with_escapes_and_full_rows():
    import constriction
    tables = rover_model(1).y_tables
    rng = np.random.default_rng(2)
    n = 5000
    t = rng.integers(0, len(tables.sizes), n)
    g_a = rng.integers(100, 20_000, n)
    g_b = g_a * rng.choice([1, 2, 5, 40, 3000], n)            # 3000: the interval covers whole tables
    s_a = rng.integers(-30, 30, n) + rng.choice([0, -3000, 3000], n, p=[0.9, 0.05, 0.05])
    iv = refine.compatible(s_a, rng.integers(-100, 100, n), g_a, g_b, rng.integers(-100, 100, n))
    keep = np.maximum(np.abs(iv.lo), np.abs(iv.hi)) <= spec.Y_CLIP        # symbols are 16-bit, as in any stream
    iv, t = iv[keep], t[keep]
    s = iv.lo + np.floor(rng.random(len(t)) * (iv.hi - iv.lo + 1)).astype(np.int64)
    full = refine._rows(iv, t, tables)[0]
    assert 0 < full.sum() < len(t) and len(t) > 4000
    enc = constriction.stream.queue.RangeEncoder()
    refine.encode_unit(enc, s, iv, t, tables)
    dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
    assert np.array_equal(refine.decode_unit(dec, iv, t, tables), s)


def test_base_plus_refinement_is_the_one_shot_stream(chain):
    """Layer 1 reproduces the one-shot q75 stream's symbols (its RDO choice included), so the
    ground renders the same pixels, for any thread count; and costs little more than that stream."""
    base, r1, _, one75, _ = chain
    assert r1.header.layer == 1 and r1.header.base_id == refine.stream_id(base.data)
    assert r1.header.base_q100 == 2000 and r1.header.q100 == 7500
    got = top_latents([base.data, r1.data])
    for index, (_, _, _, y) in enumerate(r1.tiles):
        assert np.array_equal(got[index], y)                              # the ground decodes what the rover coded
    same = np.mean([np.mean(got[i] == one75.tiles[i][3]) for i in got])
    assert same > 0.999
    layered = decode(r1.data, threads=1, bases=[base.data]).image
    assert np.array_equal(layered, decode(r1.data, threads=2, bases=[base.data]).image)
    if same == 1:
        assert np.array_equal(layered, decode(one75.data, threads=1).image)
    assert len(base.data) + len(r1.data) <= 1.08 * len(one75.data)       # measured 1.03-1.04 (BENCHMARKS)
    assert len(r1.data) < len(one75.data)


def test_chain_of_two_refinements_and_base_alone(chain):
    base, r1, r2, _, one90 = chain
    assert (r2.header.layer, r2.header.base_id, r2.header.base_q100) == (2, refine.stream_id(r1.data), 7500)
    got = top_latents([base.data, r1.data, r2.data])
    assert np.mean([np.mean(got[i] == one90.tiles[i][3]) for i in got]) > 0.999
    assert decode(r2.data, threads=1, bases=[base.data, r1.data]).image.shape == (128, 192)
    alone = decode(base.data, threads=1)
    assert alone.image.shape == (128, 192) and not alone.problems


def test_wrong_or_missing_base_is_one_line_error_naming_the_id(chain, img):
    base, r1, r2, one75, _ = chain
    want = refine.stream_id(base.data).hex()
    with pytest.raises(RemacError, match=f"refinement layer 1 of base stream {want}") as err:
        decode(r1.data)
    assert "\n" not in str(err.value)
    other = encode(img, EncodeOptions(3000, tile=64)).data
    with pytest.raises(RemacError, match=f"needs base stream {want} .*given {refine.stream_id(other).hex()}"):
        decode(r1.data, bases=[other])
    with pytest.raises(RemacError, match=f"needs base stream {refine.stream_id(r1.data).hex()}"):
        decode(r2.data, bases=[base.data, one75.data])
    with pytest.raises(RemacError, match="not a base stream"):
        decode(r2.data, bases=[r1.data])
    with pytest.raises(RemacError, match="not the one the base stream codes"):
        encode_refinement(load_image(GREY), [base.data], EncodeOptions(7500))
    with pytest.raises(RemacError, match="not the one the base stream codes"):
        encode_refinement(load_image(COLOUR), [base.data], EncodeOptions(7500))


def test_colour_planes_refine_each_plane():
    """A colour image (Y, Cb, Cr planes): each plane refined from its base quality (chroma: the
    base's chroma_q100) to the layer's; base + layer = the one-shot stream's symbols and pixels."""
    img = load_image(COLOUR)
    img.pixels = img.pixels[:, :128, :192]
    base = encode(img, EncodeOptions(2000, tile=64))
    layer = encode_refinement(img, [base.data], EncodeOptions(7500))
    one = encode(img, EncodeOptions(7500, tile=64), keep_tiles=True)
    assert layer.header.planes == 1 and layer.header.chroma_q100 == one.header.chroma_q100 == 9000
    assert len(layer.tiles) == len(one.tiles) == 6 + 2 * 2
    got = top_latents([base.data, layer.data])
    assert all(np.array_equal(got[i], y) for i, (_, _, _, y) in enumerate(layer.tiles))
    assert np.mean([np.mean(got[i] == one.tiles[i][3]) for i in got]) > 0.999
    image = decode(layer.data, threads=1, bases=[base.data]).image
    assert image.shape == (128, 192, 3)
    # a 128x192 crop in 64-px tiles: 1.082 (BT.601 planes: 1.078; the one-shot is 1.6 % smaller
    # with the image's own colour transform, the base at q20 no larger); full frames: BENCHMARKS.md
    assert len(base.data) + len(layer.data) <= 1.09 * len(one.data)
    assert layer.header.colour_transform == base.header.colour_transform == one.header.colour_transform != b""


@pytest.mark.parametrize("qa,qb", [(12, 75), (20, 25), (75, 20)])
def test_zero_gains_and_a_coarser_layer_still_decode(img, qa, qb):
    """Channels a quality drops (gain 0: 25 of them at 12, 28 at 25) are coded unconstrained; a
    'refinement' to a lower quality is allowed and decodes to what the rover coded."""
    base = encode(img, EncodeOptions(quality_steps(qa), tile=64))
    layer = encode_refinement(img, [base.data], EncodeOptions(qb * 100))
    got = top_latents([base.data, layer.data])
    assert all(np.array_equal(got[i], y) for i, (_, _, _, y) in enumerate(layer.tiles))


def test_damaged_refinement_tile_is_lost_alone(chain):
    """A refinement tile that fails its CRC is lost (filled flat) in the layered image; the other
    tiles decode, and --strict refuses."""
    base, r1, _, _, _ = chain
    data, pos = bytearray(r1.data), 8
    while True:                                  # find tile 4's segment, damage a byte of its words
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"TILE" and struct.unpack_from(">I", data, pos + 8)[0] == 4:
            data[pos + 8 + length // 2] ^= 0xFF
            break
        pos += 12 + length
    result = decode(bytes(data), threads=1, bases=[base.data])
    assert result.lost_tiles == [4] and result.image.shape == (128, 192)
    with pytest.raises(RemacError, match="damaged"):
        decode(bytes(data), threads=1, bases=[base.data], strict=True)


def test_cli_refine_and_decode_chain(tmp_path, img):
    from click.testing import CliRunner
    from PIL import Image

    from remac.rover_encoder.info import main as info_main
    from remac.ground_decoder.cli import decode_main
    from remac.rover_encoder.cli import encode_main
    run = lambda cmd, args: CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)
    src = tmp_path / "img.png"
    Image.fromarray(np.round(img.pixels[0] * 255).astype(np.uint8)).save(src)
    assert run(encode_main, [src, "-q", "20", "-o", tmp_path / "img.q20.rmc"]).exit_code == 0
    r = run(encode_main, [src, "--refine", tmp_path / "img.q20.rmc", "-q", "75", "-o", tmp_path / "img.r.rmc",
                          "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout.splitlines()[0])
    base_id = refine.stream_id((tmp_path / "img.q20.rmc").read_bytes()).hex()
    assert info["refines"] == {"layer": 1, "base_id": base_id, "base_quality": 20.0}
    r = run(decode_main, [tmp_path / "img.q20.rmc", tmp_path / "img.r.rmc", "-o", tmp_path / "a.png"])
    assert r.exit_code == 0, r.output
    r = run(decode_main, [tmp_path / "img.r.rmc", "--base", tmp_path / "img.q20.rmc", "-o", tmp_path / "b.png"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    r = run(decode_main, [tmp_path / "img.r.rmc", "-o", tmp_path / "c.png"])
    assert r.exit_code == 1 and base_id in r.output
    r = run(info_main, [tmp_path / "img.r.rmc", "--json"])
    d = json.loads(r.stdout.splitlines()[0])
    assert d["refines"]["base_id"] == base_id
    assert d["stream_id"] == refine.stream_id((tmp_path / "img.r.rmc").read_bytes()).hex()
    r = run(encode_main, [src, "--refine", tmp_path / "img.q20.rmc", "--target-bytes", "9000"])
    assert r.exit_code == 2


def test_a_refinement_is_coded_at_a_quality_not_to_a_size(tmp_path):
    from remac.rover_encoder.api import encode_file
    from remac.rover_encoder.options import EncodeOptions
    with pytest.raises(RemacError, match="refinement layer is coded at a quality"):
        EncodeOptions(refine=("base.rmc",), target_bytes=1000)
    with pytest.raises(RemacError, match="refinement layer is coded at a quality"):
        encode_file(GREY, tmp_path / "x.rmc", refine=[str(GREY)], bpp=0.5)
    assert not (tmp_path / "x.rmc").exists()
