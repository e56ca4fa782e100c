"""Re-imaged scenes (docs/FORMAT.md, "Re-imaged scenes"): a frame coded given an earlier stream of
the same pointing. Header bytes, the shift search, round trips (rover and ground agree exactly),
the bytes saved on a moved, brightened, noisy, re-JPEGed copy, nothing added on an unrelated frame,
and the errors that name the prior's ID."""
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from remac.bitstream import container, refine
from remac.bitstream.container import Header
from remac.bitstream.errors import FormatError, RemacError
from remac.ground_decoder.decode import decode, entropy_decode_layers
from remac.rover_encoder.analysis import rover_model
from remac.rover_encoder.api import to_source
from remac.rover_encoder.encode import encode
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.prior import encode_with_prior, estimate_shift, prior_streams
from tests.conftest import COLOUR, GREY, psnr

MODEL_ID = bytes.fromhex("0102030405060708")
SHIFT = (5, -11)        # the new frame's pixel p shows the earlier frame's p + SHIFT
SIDE = 192


def moved(a: np.ndarray, shift, gain: float, sigma: float, seed: int = 0) -> np.ndarray:
    """The 192² frame at (24, 24) + shift of `a`, times gain, plus noise, through JPEG 90."""
    rng = np.random.default_rng(seed)
    top, left = 24 + shift[0], 24 + shift[1]
    x = a[top:top + SIDE, left:left + SIDE].astype(np.float64) * gain + rng.normal(0, sigma, (SIDE, SIDE))
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


@pytest.fixture(scope="module")
def frames():
    a = np.asarray(Image.open(GREY).convert("L"))
    return a[24:24 + SIDE, 24:24 + SIDE].copy(), moved(a, SHIFT, 1.06, 1.5)


@pytest.fixture(scope="module")
def coded(frames):
    earlier, new = frames
    opts = EncodeOptions(5000, tile=128)
    prior = encode(to_source(earlier), opts).data
    alone = encode(to_source(new), opts)
    given = encode_with_prior(to_source(new), [prior], opts)
    return prior, alone, given


def test_prior_header_fields_at_documented_offsets():
    """flags bit 5, then prior_id (8), prior_q100 (2), shift (2 x i16), crop (2 x u8), gain (u16),
    offset (i16), one byte per tile, after every other optional field but the quality map."""
    pid = bytes.fromhex("b1b2b3b4b5b6b7b8")
    h = Header(MODEL_ID, 200, 130, 1, 1, 8, 50, 128, 128, prior_id=pid, prior_q100=4025, prior_shift=(-2, 1),
               prior_crop=(3, 15), prior_gain=1100, prior_offset=-37, prior_tiles=(0, 1, 64, 7))
    payload = h.pack()
    assert payload[20] == 0x20 and len(payload) == 21 + 20 + 4
    assert payload[21:29] == pid
    assert payload[29:41] == struct.pack(">HhhBBHh", 4025, -2, 1, 3, 15, 1100, -37)
    assert payload[41:] == bytes([0, 1, 64, 7])
    assert Header.unpack(payload) == h
    assert h.image_size == (185, 127)
    with pytest.raises(FormatError, match="expected 45"):
        Header.unpack(payload[:-1])
    for tile_byte in (18, 19):          # a zero tile side: a one-line error, not a division by zero
        with pytest.raises(FormatError):
            Header.unpack(payload[:tile_byte] + b"\x00" + payload[tile_byte + 1:])
    with pytest.raises(FormatError, match="tile size"):     # refused by name before tiles are counted
        Header(**{**h.__dict__, "tile_width": 0}).validate()
    for bad in (dict(prior_tiles=(0, 1, 65, 0)), dict(prior_tiles=(0,)), dict(prior_crop=(16, 0)),
                dict(prior_gain=0), dict(layer=1, base_id=pid, base_q100=100)):
        with pytest.raises(FormatError, match="prior"):
            Header(MODEL_ID, 200, 130, 1, 1, 8, 50, 128, 128, prior_id=pid, prior_q100=4025,
                   **{"prior_tiles": (0, 1, 2, 3), "prior_gain": 1024, **bad}).pack()


def test_planar_prior_header_and_planes():
    """Luma + chroma planes: 8 more bytes (the chroma planes' gain and offset) before the tile bytes;
    each plane's header carries its own shift (chroma: half, in its own cells), gain and tiles."""
    pid = bytes.fromhex("b1b2b3b4b5b6b7b8")
    h = Header(MODEL_ID, 200, 130, 3, 3, 8, 50, 128, 128, planes=1, chroma_shift=1, chroma_q100=6500,
               prior_id=pid, prior_q100=5000, prior_shift=(-2, 4), prior_crop=(31, 3), prior_gain=1000,
               prior_offset=5, prior_planes=((900, -7), (1100, 8)), prior_tiles=(1, 2, 3, 4, 5, 6))
    payload = h.pack()
    assert payload[20] == 0x20 and len(payload) == 21 + 2 + 20 + 8 + 6
    assert payload[43:51] == struct.pack(">HhHh", 900, -7, 1100, 8) and payload[51:] == bytes([1, 2, 3, 4, 5, 6])
    assert Header.unpack(payload) == h
    y, c1, c2 = (h.plane(k) for k in range(3))
    assert (y.prior_shift, y.prior_gain, y.prior_tiles) == ((-2, 4), 1000, (1, 2, 3, 4))
    assert (c1.prior_shift, c1.prior_gain, c1.prior_offset, c1.prior_tiles) == ((-1, 2), 900, -7, (5,))
    assert (c2.prior_gain, c2.prior_tiles) == (1100, (6,))
    with pytest.raises(FormatError, match="prior"):
        Header(MODEL_ID, 200, 130, 3, 3, 8, 50, 128, 128, planes=1, chroma_shift=1, prior_id=pid,
               prior_shift=(-1, 4), prior_planes=((900, -7), (1100, 8)), prior_tiles=(1,) * 6).pack()


def test_colour_frame_given_a_colour_prior(tmp_path):
    """A colour frame is coded plane by plane given a colour prior (the prior's colour transform);
    rover and ground agree exactly, the image is the frame's size; a grey prior is not used for it."""
    a = np.asarray(Image.open(COLOUR).convert("RGB")).astype(np.float64)
    rng = np.random.default_rng(0)
    earlier = a[24:24 + SIDE, 24:24 + SIDE].astype(np.uint8)
    new = np.clip(a[35:35 + SIDE, 11:11 + SIDE] * 1.04 + rng.normal(0, 1, (SIDE, SIDE, 3)) + 0.5, 0, 255).astype(np.uint8)
    opts = EncodeOptions(5000, tile=128)
    prior = encode(to_source(earlier), opts).data
    given = encode_with_prior(to_source(new), [prior], opts)
    alone = encode(to_source(new), opts).data
    h = given.header
    assert h.has_prior and h.planes and any(h.prior_tiles) and h.colour_transform == container.read(prior).header.colour_transform
    assert (16 * h.prior_shift[0] + h.prior_crop[0], 16 * h.prior_shift[1] + h.prior_crop[1]) == (11, -13)
    assert len(given.data) < 0.8 * len(alone)
    _, _, _, tiles, lost, problems = entropy_decode_layers([given.data], priors=[prior])
    assert not lost and not problems
    assert all(np.array_equal(tiles[i], t[3]) for i, t in enumerate(given.tiles))
    image = decode(given.data, threads=1, priors=[prior]).image
    assert image.shape == new.shape and psnr(new, image) > psnr(new, decode(alone, threads=1).image) - 1
    grey = encode(to_source(np.asarray(Image.fromarray(earlier).convert("L"))), opts).data
    assert not encode_with_prior(to_source(new), [grey], opts).header.has_prior
    from remac.rover_encoder.scenes import encode_with_store
    first = encode_with_store(to_source(earlier), opts, tmp_path / "s")
    again = encode_with_store(to_source(new), opts, tmp_path / "s")
    assert again.header.prior_id == refine.stream_id(first.data) and again.header.planes


def test_shift_search_finds_the_shift(frames, coded):
    earlier, new = frames
    _, latents, _ = prior_streams([coded[0]], rover_model(1))
    match = estimate_shift(new.astype(np.float64), latents[0].p16[0])
    assert match.shift == SHIFT and match.repeats


def test_round_trip_rover_and_ground_agree(coded):
    prior, alone, given = coded
    h = given.header
    assert h.has_prior and h.prior_id == refine.stream_id(prior)
    assert (16 * h.prior_shift[0] + h.prior_crop[0], 16 * h.prior_shift[1] + h.prior_crop[1]) == SHIFT
    assert h.image_size == (SIDE, SIDE) and any(h.prior_tiles)
    _, _, _, tiles, lost, problems = entropy_decode_layers([given.data], priors=[prior])
    assert not lost and not problems
    for index, (_, _, _, y) in enumerate(given.tiles):
        assert np.array_equal(tiles[index], y)


def test_moved_noisy_copy_costs_far_fewer_bytes(frames, coded):
    _, new = frames
    prior, alone, given = coded
    assert len(given.data) < 0.5 * len(alone.data)
    image = decode(given.data, threads=1, priors=[prior]).image
    assert image.shape == new.shape
    assert psnr(new, image) > psnr(new, decode(alone.data, threads=1).image) - 1.0


def test_pixels_do_not_depend_on_threads(frames, coded):
    earlier, new = frames
    prior, _, given = coded
    again = encode_with_prior(to_source(new), [prior], EncodeOptions(5000, tile=128, threads=2))
    assert again.data == given.data
    one, two = (decode(given.data, threads=t, priors=[prior]).image for t in (1, 3))
    assert np.array_equal(one, two)


def test_unrelated_frame_costs_nothing_more(frames):
    earlier, _ = frames
    other = np.asarray(Image.open(COLOUR).convert("L"))[:SIDE, :SIDE]
    opts = EncodeOptions(5000, tile=128)
    prior = encode(to_source(earlier), opts).data
    alone = encode(to_source(other), opts).data
    given = encode_with_prior(to_source(other), [prior], opts).data
    assert len(given) <= 1.001 * len(alone) + 8
    assert given == alone       # nothing repeats: the stream of its own, byte for byte


def test_missing_or_wrong_prior_is_one_line_error_naming_the_id(frames, coded):
    prior, alone, given = coded
    want = refine.stream_id(prior).hex()
    with pytest.raises(RemacError, match=f"coded given prior stream {want}") as err:
        decode(given.data)
    assert "\n" not in str(err.value)
    with pytest.raises(RemacError, match=f"prior stream {want} .*given: {refine.stream_id(alone.data).hex()}"):
        decode(given.data, priors=[alone.data])
    assert decode(given.data, threads=1, priors=[alone.data, prior]).image.shape == (SIDE, SIDE)


def test_prior_of_a_prior_is_followed(frames, coded):
    """A prior may itself be coded given a prior: the decoder follows the IDs through the streams given."""
    earlier, new = frames
    prior, _, given = coded
    a = np.asarray(Image.open(GREY).convert("L"))
    third = moved(a, (SHIFT[0] + 3, SHIFT[1] + 2), 1.0, 1.0, seed=1)
    opts = EncodeOptions(5000, tile=128)
    with pytest.raises(RemacError, match=f"prior stream {refine.stream_id(prior).hex()}"):
        encode_with_prior(to_source(third), [given.data], opts)
    again = encode_with_prior(to_source(third), [given.data, prior], opts)
    assert again.header.prior_id == refine.stream_id(given.data)
    image = decode(again.data, threads=1, priors=[prior, given.data]).image
    assert psnr(third, image) > 28


def test_cli_prior(tmp_path, frames):
    from click.testing import CliRunner

    from remac.ground_decoder.cli import decode_main
    from remac.rover_encoder.cli import encode_main
    from remac.rover_encoder.info import main as info_main
    earlier, new = frames
    run = lambda cmd, args: CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)
    Image.fromarray(earlier).save(tmp_path / "a.png")
    Image.fromarray(new).save(tmp_path / "b.png")
    assert run(encode_main, [tmp_path / "a.png", "-q", "50", "--tile", "128", "-o", tmp_path / "a.rmc"]).exit_code == 0
    r = run(encode_main, [tmp_path / "b.png", "-q", "50", "--prior", tmp_path / "a.rmc", "-o", tmp_path / "b.rmc",
                          "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout.splitlines()[0])
    pid = refine.stream_id((tmp_path / "a.rmc").read_bytes()).hex()
    assert info["prior"]["id"] == pid and info["prior"]["shift_px"] == list(SHIFT)
    assert (info["width"], info["height"]) == (SIDE, SIDE)
    r = run(decode_main, [tmp_path / "b.rmc", "-o", tmp_path / "b.dec.png"])
    assert r.exit_code == 1 and pid in r.output
    r = run(decode_main, [tmp_path / "b.rmc", "--prior", tmp_path / "a.rmc", "-o", tmp_path / "b.dec.png"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "b.dec.png").size == (SIDE, SIDE)
    r = run(info_main, [tmp_path / "b.rmc", "--json"])
    assert json.loads(r.stdout.splitlines()[0])["prior"]["id"] == pid
    r = run(encode_main, [tmp_path / "b.png", "--prior", tmp_path / "a.rmc", "--target-bytes", "9000"])
    assert r.exit_code == 2


def test_scene_store_finds_the_repeat_within_its_bound(tmp_path, frames):
    """--store: the first frame is coded alone and kept; an unrelated frame is coded alone and kept;
    the re-imaged frame is found and coded given the first (and not kept: only key frames are); the
    store keeps its bound, the newest first."""
    from remac.rover_encoder.scenes import SceneStore, encode_with_store
    earlier, new = frames
    other = np.asarray(Image.open(COLOUR).convert("L"))[:SIDE, :SIDE]
    opts = EncodeOptions(5000, tile=128)
    first = encode_with_store(to_source(earlier), opts, tmp_path / "s")
    assert not first.header.has_prior
    second = encode_with_store(to_source(other), opts, tmp_path / "s")
    assert not second.header.has_prior
    again = encode_with_store(to_source(new), opts, tmp_path / "s")
    assert again.header.prior_id == refine.stream_id(first.data)
    assert decode(again.data, threads=1, priors=[first.data]).image.shape == (SIDE, SIDE)
    store = SceneStore(tmp_path / "s")
    assert [e["id"] for e in store.newest()] == [refine.stream_id(s.data).hex() for s in (second, first)]
    small = store.newest()[0]["bytes"] + 100
    third = encode_with_store(to_source(np.ascontiguousarray(other[::-1])), opts, tmp_path / "s", limit=small)
    kept = SceneStore(tmp_path / "s")
    assert kept.size <= small and [e["id"] for e in kept.entries] == [refine.stream_id(third.data).hex()]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(
        [f"{kept.entries[0]['id']}.rmc", f"{kept.entries[0]['id']}.npy", "index.json"])


def test_a_damaged_scene_store_is_a_clear_error_or_forgets_missing_streams(tmp_path, frames):
    """An index naming files that are gone (a store cut short between its writes) forgets those
    entries; an index of the wrong shape, or an unreadable thumbnail, is one RemacError naming it."""
    from remac.rover_encoder.scenes import SceneStore, encode_with_store
    earlier, _ = frames
    opts = EncodeOptions(5000, tile=128)
    kept = encode_with_store(to_source(earlier), opts, tmp_path / "s")
    sid = refine.stream_id(kept.data).hex()
    index = tmp_path / "s" / "index.json"
    entries = json.loads(index.read_text())
    index.write_text(json.dumps(entries + [{**entries[0], "id": "00" * 8}]))
    assert [e["id"] for e in SceneStore(tmp_path / "s").entries] == [sid]
    (tmp_path / "s" / f"{sid}.npy").write_bytes(b"not a thumbnail")
    with pytest.raises(RemacError, match=f"stored stream {sid} is unreadable"):
        SceneStore(tmp_path / "s").thumbnail(entries[0])
    for bad in ("{}", "[{\"id\": 3}]"):
        index.write_text(bad)
        with pytest.raises(RemacError, match="not a scene store index"):
            SceneStore(tmp_path / "s")
