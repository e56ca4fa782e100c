"""Colour as luma + chroma planes (format 3.0): the stream layout, the transform and decoding,
including a damaged chroma tile."""
import struct

import numpy as np
import pytest

from remac.bitstream import colour, container
from remac.bitstream.container import Header
from remac.bitstream.errors import FormatError, RemacError
from remac.ground_decoder.decode import decode
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import load_image
from remac.rover_encoder.planar import CHROMA_SHIFT, chroma_quality
from tests.conftest import COLOUR, pixels, psnr
from remac.rover_encoder.options import EncodeOptions


@pytest.fixture(scope="module")
def stream(default_library):
    return encode(load_image(COLOUR), EncodeOptions(6000, library=default_library, tile=128, keep_refs=True))


def test_colour_is_coded_as_three_planes_of_the_grey_model(stream):
    from remac.bitstream import modelfile
    h = stream.header
    assert h.version == (4, 0) and h.planes == 1 and h.chroma_shift == CHROMA_SHIFT == 1
    assert h.model_id == modelfile.load("grey").model_id and h.coded_channels == h.output_channels == 3
    assert h.chroma_q100 == chroma_quality(6000) > 6000
    # 256x256 in 128-px tiles: 4 luma tiles, then one 128x128 tile for each chroma plane
    assert [(p.width, p.height, off) for p, off in h.coded_planes()] == [(256, 256, 0), (128, 128, 4), (128, 128, 5)]
    assert h.tile_count == 6 and h.plane(1).entropy_ref_id == container.ZERO_ID
    assert h.plane(0).entropy_ref_id == h.entropy_ref_id != container.ZERO_ID     # references serve luma


def test_remac_info_names_each_tiles_plane(stream):
    from remac.rover_encoder.info import describe
    d = describe(stream.data)
    transform = stream.header.colour_transform
    assert d["version"] == "4.0" and len(transform) == 5
    weights = [round(w / 256, 4) for w in (transform[0], 256 - transform[0] - transform[1], transform[1])]
    assert d["planes"] == {"chroma_shift": 1, "chroma_quality": chroma_quality(6000) / 100, "transform": transform.hex(),
                           "luma_weights": weights}
    assert [t["plane"] for t in d["tiles"]] == ["Y"] * 4 + ["C1", "C2"]
    assert d["tiles"][4]["width"] == d["tiles"][4]["height"] == 128 and d["intact"]


def test_rhdr_3_0_is_56_bytes_then_planes_shift_and_chroma_quality(stream):
    from dataclasses import replace
    payload = replace(stream.header, version=(3, 0), colour_transform=b"").pack()    # 3.0: BT.601 only
    assert len(payload) == 60 and payload[:2] == b"\x03\x00"
    assert struct.unpack(">I", payload[50:54])[0] == 6                 # tile_count over all planes
    assert payload[56:60] == struct.pack(">BBH", 1, 1, chroma_quality(6000))
    assert Header.unpack(payload) == replace(stream.header, version=(3, 0), colour_transform=b"")


def test_rhdr_4_0_carries_planes_in_layout_and_chroma_quality_after_the_fixed_fields(stream):
    """... then the reference IDs (flags bit 1), then the image's colour transform (flags bit 4)."""
    payload = stream.data[16:16 + 21 + 2 + 24 + 5]
    assert struct.unpack(">I", stream.data[8:12])[0] == 52 and stream.data[12:16] == b"RHDR"
    assert payload[:2] == b"\x04\x00" and payload[14] == 3 | 3 << 2 | 1 << 4 | 1 << 5
    assert payload[20] == 0b10011 and payload[21:23] == struct.pack(">H", chroma_quality(6000))
    assert payload[23:47] == stream.header.library_id + stream.header.entropy_ref_id + stream.header.decoder_ref_id
    assert payload[47:52] == stream.header.colour_transform and len(stream.header.colour_transform) == 5
    assert Header.unpack(payload) == stream.header


def test_bt601_streams_carry_no_colour_transform(stream):
    """--colour-transform bt601 (and every stream before the adaptive transform): flags bit 4 clear,
    no transform bytes, Y Cb Cr planes."""
    from dataclasses import replace
    payload = replace(stream.header, colour_transform=b"").pack()
    assert len(payload) == 47 and payload[20] == 0b11
    assert Header.unpack(payload).colour_transform == b""


@pytest.mark.parametrize("field,message", [
    (dict(planes=2), "planes 2"),
    (dict(planes=1, coded_channels=1, output_channels=1), "8-bit RGB"),
    (dict(chroma_shift=2), "chroma_shift 2"),
    (dict(chroma_q100=10001), "chroma_q100 10001"),
    (dict(planes=0, chroma_shift=1), "chroma_shift 1"),
    (dict(colour_transform=bytes([200, 57, 0, 128, 128])), "colour transform c839008080"),
    (dict(colour_transform=bytes(4)), "colour transform 00000000"),
    (dict(planes=0, chroma_shift=0, chroma_q100=0, coded_channels=1, output_channels=1), "colour transform"),
])
def test_bad_plane_fields_are_refused_by_name(stream, field, message):
    bad = Header(**{**stream.header.__dict__, **field})
    with pytest.raises(FormatError, match=message):
        bad.validate()


def test_a_two_dot_zero_header_cannot_carry_planes(stream):
    with pytest.raises(FormatError, match="needs format 3"):
        Header(**{**stream.header.__dict__, "version": (2, 0)}).validate()


def test_colour_round_trip_quality_and_geometry(stream, default_library):
    a = pixels(COLOUR)
    out = decode(stream.data, default_library).image
    assert out.shape == a.shape and out.dtype == np.uint8
    assert psnr(a, out) > 29.0


@pytest.mark.parametrize("h,w", [(97, 131), (64, 65)])
def test_odd_colour_sizes_keep_their_geometry(h, w, default_library):
    img = load_image(COLOUR)
    img.pixels = img.pixels[:, :h, :w]
    out = decode(encode(img, EncodeOptions(7000, library=default_library, tile=64)).data, default_library).image
    assert out.shape == (h, w, 3)
    assert psnr(np.round(img.pixels.transpose(1, 2, 0) * 255), out) > 27.0


def test_a_damaged_chroma_tile_is_concealed_and_reported(stream, default_library):
    data = bytearray(stream.data)
    at = [i for i in range(len(data)) if data[i:i + 4] == b"TILE"]
    assert len(at) == 6
    data[at[4] + 12] ^= 0xFF                # Cb's only tile fails its CRC: lost
    data = bytes(data)
    result = decode(data, default_library)
    assert result.lost_tiles == [4] and result.problems
    a, out = pixels(COLOUR).astype(float), result.image.astype(float)
    luma = lambda x: x @ [0.299, 0.587, 0.114]
    assert psnr(luma(a), luma(out)) > 25.0                  # luma intact: the picture survives
    with pytest.raises(RemacError, match="damaged stream"):
        decode(data, default_library, strict=True)


def test_planes_transform_is_exact_on_smooth_colour():
    ramp = np.linspace(0.1, 0.9, 40)
    rgb = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 1 - ramp) / 2, np.full((40, 40), 0.3)])
    planes = colour.to_planes(rgb, 1)
    assert [p.shape for p in planes] == [(40, 40), (20, 20), (20, 20)]
    back = colour.from_planes(planes, 1)
    assert np.abs(back - rgb)[:, 1:-1, 1:-1].max() < 1e-6          # linear: no luma detail, upsampling is exact
    assert np.abs(colour.from_planes(colour.to_planes(rgb, 0), 0) - rgb).max() < 1e-6


def test_chroma_that_follows_luma_is_upsampled_with_the_luma_detail():
    """One hue over a fine texture (RGB = hue x texture): inside each 2x2 box chroma moves with luma,
    which bilinear upsampling of the box means cannot know and the luma-guided upsampler restores."""
    texture = 0.05 + 0.9 * np.random.default_rng(0).random((64, 64))
    rgb = np.array([0.9, 0.6, 0.4])[:, None, None] * texture
    planes = colour.to_planes(rgb, 1)
    luma = planes[0].astype(np.float64)
    bilinear = np.tensordot(colour.RGB, np.stack([luma] + [colour.upsample(c, 1, 64, 64) - colour.CHROMA_OFFSET
                                                          for c in planes[1:]]), axes=1)
    rms = lambda x: np.sqrt(np.mean((x - rgb) ** 2))
    assert rms(colour.from_planes(planes, 1)) < 0.4 * rms(bilinear)


def test_the_promotion_ranking_codes_colour_exactly_as_the_rover_does(default_library):
    """training.rank scores colour candidates with its own torch path: its planar stream has
    the real stream's size to the byte, and the same pixels within a fraction of a dB."""
    torch = pytest.importorskip("torch")
    from training.rank import code_planes, shipped_model
    model, em = shipped_model("grey")
    a = pixels(COLOUR)
    x = torch.from_numpy(a.transpose(2, 0, 1).copy()).float()[None] / 255
    size, x_hat = code_planes(model, em, x, 55)
    real = encode(load_image(COLOUR), EncodeOptions(5500, precision="float"))
    assert size == len(real.data)
    ranked = np.round(x_hat[0].numpy().transpose(1, 2, 0) * 255)
    assert abs(psnr(a, ranked) - psnr(a, decode(real.data, default_library).image)) < 0.1


def test_the_adaptive_transform_puts_texture_in_luma_whatever_its_colour():
    """A texture that varies only along one colour axis (RGB = hue x texture + a flat tint): the
    fitted transform's luma weights follow the hue, so the half-size chroma planes keep almost
    none of the texture (BT.601's Cb, Cr keep much of a reddish texture); the transform inverts."""
    rng = np.random.default_rng(1)
    texture = rng.random((64, 64))
    hue = np.array([0.7, 0.45, 0.2])
    rgb = 0.1 + hue[:, None, None] * texture
    code = colour.fit_transform(rgb)
    matrix, offsets = colour.transform_matrix(code)
    weights = matrix[0]
    assert len(code) == colour.TRANSFORM_BYTES and abs(weights.sum() - 1) < 1e-9 and weights.min() >= 0
    assert np.abs(weights - hue / hue.sum()).max() < 0.01
    chroma_energy = lambda m: sum(np.var(m[k] @ rgb.reshape(3, -1)) for k in (1, 2))
    assert chroma_energy(matrix) < 1e-3 * chroma_energy(colour.YCBCR)
    planes = colour.to_planes(rgb, 0, code)
    assert all(0 < p.min() and p.max() < 1 for p in planes)                  # centred: nothing clipped
    assert np.abs(colour.from_planes(planes, 0, code) - rgb).max() < 1e-6
    np.testing.assert_array_equal(colour.to_planes(rgb, 0, b"")[0], colour.to_planes(rgb, 0)[0])


def test_a_grey_or_flat_image_gets_a_valid_transform():
    grey = np.repeat(np.random.default_rng(2).random((1, 32, 32)), 3, axis=0)
    assert colour.fit_transform(grey)[:2] == bytes([85, 85])                 # equal weights
    checker = np.indices((16, 16)).sum(0) % 2
    red_green = np.stack([checker, 1 - checker, np.full((16, 16), 0.5)]).astype(float)   # axis (1,-1,0)/sqrt 2
    for flat in (np.full((3, 16, 16), 0.5), np.zeros((3, 1, 1)), red_green, red_green[[2, 0, 1]]):
        code = colour.fit_transform(flat)
        colour.transform_matrix(code)                                          # valid
        if flat.std() == 0:
            assert code[:2] == bytes([77, 29])                                 # BT.601's luma weights
        np.testing.assert_allclose(colour.from_planes(colour.to_planes(flat, 0, code), 0, code), flat, atol=1e-6)
    with pytest.raises(ValueError, match="w_r \\+ w_b"):
        colour.transform_matrix(bytes([200, 57, 0, 128, 128]))


def test_the_decoder_uses_the_streams_colour_transform(default_library):
    """The adaptive stream decodes as well as the BT.601 one; read as BT.601 (its transform bytes
    dropped) it decodes to the wrong colours."""
    from dataclasses import replace
    a = pixels(COLOUR)
    opts = EncodeOptions(5000, library=default_library, tile=128)
    own = encode(load_image(COLOUR), opts)
    fixed = encode(load_image(COLOUR), replace(opts, colour_transform=b""))
    assert len(own.header.colour_transform) == 5 and fixed.header.colour_transform == b""
    good, usual = (psnr(a, decode(s.data, default_library).image) for s in (own, fixed))
    assert good > usual - 0.3 and good > 29
    parsed = container.read(own.data)
    wrong = container.write(replace(parsed.header, colour_transform=b""), parsed.tiles)
    assert psnr(a, decode(wrong, default_library).image) < good - 3
