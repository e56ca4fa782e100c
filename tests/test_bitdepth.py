"""True bit depth: a 12-bit frame (0..4095 in a 16-bit PNG) is coded at its own range and comes
back as 12-bit samples, at the 8-bit rendering's quality and rate."""
import io
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from remac.bitstream.errors import RemacError
from remac.ground_decoder.cli import decode_main
from remac.rover_encoder.cli import encode_main
from remac.rover_encoder.imageio import PNG_SIGNATURE, from_samples, load_image, png_sbit
from tests.conftest import COLOUR, GREY, pixels, psnr
from remac.rover_encoder.options import EncodeOptions


def png(a, sbit=None) -> bytes:
    info = PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def png16(a: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand: Pillow writes no 16-bit RGB (type 2) or grey+alpha (type 4)."""
    h, w = a.shape[:2]
    rows = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def twelve_bit(a8: np.ndarray) -> np.ndarray:
    """value*4095/255 plus a little noise in the low bits (below the 8-bit step of ~16)."""
    noise = np.random.default_rng(0).integers(-3, 4, a8.shape)
    return np.clip(np.round(a8 * (4095 / 255)) + noise, 0, 4095).astype(np.uint16)


def invoke(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


def test_twelve_bit_frame_round_trips_at_the_eight_bit_quality_and_rate(tmp_path):
    a8 = pixels(GREY)
    a12 = twelve_bit(a8)
    (tmp_path / "sbit.png").write_bytes(png(a12, sbit=12))
    (tmp_path / "plain.png").write_bytes(png(a12))
    for src, extra in (("sbit.png", []), ("plain.png", ["--bit-depth", "12"])):
        r = invoke(encode_main, [tmp_path / src, "-q", "75", "-o", tmp_path / (src + ".rmc")] + extra)
        assert r.exit_code == 0, r.output
    # sBIT and --bit-depth are the same declaration: the same stream
    assert (tmp_path / "sbit.png.rmc").read_bytes() == (tmp_path / "plain.png.rmc").read_bytes()
    assert invoke(encode_main, [GREY, "-q", "75", "-o", tmp_path / "g8.rmc"]).exit_code == 0
    for name in ("sbit.png.rmc", "g8.rmc"):
        r = invoke(decode_main, [tmp_path / name, "-o", tmp_path / (name + ".png")])
        assert r.exit_code == 0, r.output
    out12_bytes = (tmp_path / "sbit.png.rmc.png").read_bytes()
    out12, out8 = pixels(tmp_path / "sbit.png.rmc.png"), pixels(tmp_path / "g8.rmc.png")
    assert out12.dtype == np.uint16 and out12.max() <= 4095 and out12.max() > 3000
    assert png_sbit(out12_bytes) == 12
    p12, p8 = psnr(a12, out12, peak=4095), psnr(a8, out8, peak=255)
    bpp12 = 8 * (tmp_path / "sbit.png.rmc").stat().st_size / a8.size
    bpp8 = 8 * (tmp_path / "g8.rmc").stat().st_size / a8.size
    assert abs(p12 - p8) <= 0.3, (p12, p8)          # measured: 27.240 vs 27.238 dB
    assert abs(bpp12 - bpp8) <= 0.05 * bpp8, (bpp12, bpp8)     # measured: equal to 4 digits
    # the decoder's output, read back by the encoder, is 12-bit again (its sBIT)
    assert load_image(out12_bytes).bit_depth == 12


def test_sbit_and_flag_decide_the_depth_and_the_normalisation():
    a12 = twelve_bit(pixels(GREY)[:32, :32])
    img = load_image(png(a12, sbit=12))
    assert img.bit_depth == 12 and np.allclose(img.pixels[0] * 4095, a12, atol=1e-3)
    assert load_image(png(a12)).bit_depth == 16                           # no sBIT, no flag: the container's
    assert load_image(png(a12, sbit=12), bit_depth=16).bit_depth == 16    # the flag overrides sBIT
    assert load_image(png(a12, sbit=11)).bit_depth == 12                  # rounded up to a coded depth
    assert load_image(GREY).bit_depth == 8
    # samples scaled to 16 bits as the PNG specification describes sBIT (bit replication): shifted back
    scaled = (a12 << 4) | (a12 >> 8)
    assert np.array_equal(load_image(png(scaled, sbit=12)).pixels, img.pixels)


def test_samples_above_the_declared_depth_are_refused_in_one_line(tmp_path):
    a = twelve_bit(pixels(GREY)[:32, :32])
    a[5, 7] = 5000
    (tmp_path / "over.png").write_bytes(png(a))
    r = invoke(encode_main, [tmp_path / "over.png", "--bit-depth", "12", "-o", tmp_path / "o.rmc"])
    assert r.exit_code == 1 and not (tmp_path / "o.rmc").exists()
    assert r.stderr.strip() == (f"remac-encode: error: {tmp_path / 'over.png'}: sample value 5000 exceeds "
                                "the 12-bit maximum 4095 (depth from --bit-depth)")
    r = invoke(encode_main, [COLOUR, "--bit-depth", "10", "-o", tmp_path / "c.rmc"])
    assert r.exit_code == 1 and r.stderr == f"remac-encode: error: {COLOUR}: --bit-depth 10 exceeds the 8-bit samples read from it\n"
    rgb16 = np.stack([np.full((8, 8), v, np.uint16) for v in (100, 2000, 4000)], -1)      # e.g. a 3-band PDS product
    with pytest.raises(RemacError, match=r"^c16: 12-bit samples are defined for grey images only \(colour is coded at 8 bits\)$"):
        from_samples(rgb16, 16, "c16", bit_depth=12)
    r = invoke(encode_main, [GREY, "--bit-depth", "12", "-o", tmp_path / "g.rmc"])     # 8-bit samples, 16x too dark
    assert r.exit_code == 1 and r.stderr == (f"remac-encode: error: {GREY}: --bit-depth 12 exceeds the 8-bit "
                                             "samples read from it\n")
    assert invoke(encode_main, [GREY, "--bit-depth", "11"]).exit_code == 2


@pytest.mark.parametrize("depth", [10, 14])
def test_other_depths_decode_to_their_range(tmp_path, default_library, depth):
    from remac.ground_decoder.decode import decode
    from remac.rover_encoder.encode import encode
    a8 = pixels(GREY)[:64, :64]
    peak = (1 << depth) - 1
    a = np.round(a8 * (peak / 255)).astype(np.uint16)
    data = encode(load_image(png(a), bit_depth=depth), EncodeOptions(7500, library=default_library)).data
    out = decode(data, default_library).image
    assert out.dtype == np.uint16 and out.max() <= peak
    assert psnr(a, out, peak=peak) == pytest.approx(psnr(a8, np.round(out / (peak / 255))), abs=0.3)


def test_evaluation_psnr_uses_the_true_peak(default_library):
    from evaluation import rd
    a8 = pixels(GREY)[:64, :64]
    a12 = twelve_bit(a8)
    codec = rd.RemacCodec(default_library, qualities=[75])
    (r12,) = rd.measure(codec, {"x": a12}, bit_depth=12)
    (r8,) = rd.measure(codec, {"x": a8})
    assert abs(r12.psnr - r8.psnr) <= 0.3 and abs(r12.bpp - r8.bpp) <= 0.05 * r8.bpp


def test_what_pillow_narrows_or_drops_is_said_not_silent():
    grey = twelve_bit(pixels(GREY)[:32, :32]) << 4
    rgb = np.stack([grey, grey // 2, 65535 - grey], -1).astype(np.uint16)
    img = load_image(png16(rgb, 2), "rgb48.png")       # 16-bit RGB: Pillow keeps the high bytes
    assert (img.output_channels, img.bit_depth) == (3, 8)
    assert np.allclose(img.pixels * 255, (rgb >> 8).transpose(2, 0, 1), atol=1e-3)
    assert img.warnings == ["rgb48.png: 16-bit colour samples coded at 8 bits (their 8 high bits)"]
    la = np.stack([grey, np.full_like(grey, 65535)], -1)
    img = load_image(png16(la, 4), "la32.png")         # 16-bit grey+alpha: Pillow gives RGBA; still grey
    assert (img.output_channels, img.bit_depth, img.pixels.shape[0]) == (1, 8, 1)
    assert img.warnings == ["la32.png: alpha channel dropped (REMAC codes no alpha)",
                            "la32.png: 16-bit grey+alpha samples coded at 8 bits (their 8 high bits)"]
    a12 = grey >> 4
    img = load_image(png(a12, sbit=0), "s0.png")       # an invalid sBIT is ignored, like one too large
    assert img.bit_depth == 16 and img.warnings[0] == "s0.png: sBIT 0 is not a depth of 16-bit samples; ignored"
    assert img.warnings[1:] == ["s0.png: samples use 12 of 16 bits and no depth is declared; coded as 16-bit "
                                "(pass --bit-depth 12 if that is their depth)"]
    assert load_image(png(a12, sbit=12)).warnings == []
    a8 = pixels(GREY)[:32, :32]
    assert load_image(png(a8, sbit=12), "s12.png").warnings == ["s12.png: sBIT 12 is not a depth of 8-bit samples; ignored"]
    assert load_image(png(a12 * 0), "black16.png").warnings == []       # all black: no depth to suggest
    buf = io.BytesIO()
    frames = [Image.fromarray(pixels(GREY)[:32, :32]), Image.fromarray(pixels(GREY)[32:64, :32])]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert load_image(buf.getvalue(), "a.gif").warnings == ["a.gif: 2 frames or pages; only the first is coded"]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", transparency=0)
    assert load_image(buf.getvalue(), "key.png").warnings == ["key.png: transparency dropped (REMAC codes no alpha)"]
