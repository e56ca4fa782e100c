"""The .rmc byte layout, checked field by field against docs/FORMAT.md."""
import struct
import zlib

import numpy as np
import pytest

from remac.bitstream import container
from remac.bitstream.container import Header
from remac.bitstream.errors import FormatError
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import from_samples, load_image
from tests.conftest import GREY, pixels
from remac.rover_encoder.options import EncodeOptions


@pytest.fixture(scope="module")
def stream(default_library):
    img = load_image(GREY)
    img.pixels = img.pixels[:, :100, :150]          # 100x150 -> 2x3 tiles of 64
    return encode(img, EncodeOptions(6000, library=default_library, tile=64, keep_refs=True))   # the layout with references


def rewritten(data: bytes, version: tuple) -> bytes:
    """The same stream (header fields, tiles) in another version's layout."""
    parsed = container.read(data)
    parsed.header.version = version
    return container.write(parsed.header, parsed.tiles)


@pytest.fixture(scope="module")
def stream_v1(stream):
    """The fixture stream in the 1.0 layout (what the first encoders wrote)."""
    return rewritten(stream.data, (1, 0))


def segments(data):
    pos, out = 8, []
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        payload = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        out.append((kind, payload, crc))
        pos += 12 + length
    assert pos == len(data)
    return out


def test_signature_and_segment_framing(stream, stream_v1):
    for data, ending in ((stream.data, []), (stream_v1, [b"REND"])):    # 4.0 has no REND
        assert data[:8] == b"\x89RMC\r\n\x1a\n"
        segs = segments(data)
        assert [k for k, _, _ in segs] == [b"RHDR"] + [b"TILE"] * 6 + ending
        for kind, payload, crc in segs:
            assert crc == zlib.crc32(kind + payload)
    assert segs[-1][1] == b""
    assert len(stream_v1) - len(stream.data) == (56 - 45) + 6 * 4 + 12      # RHDR, word counts, REND


def test_compact_header_fields_at_documented_offsets(stream, default_library):
    """4.0 (what encoders write): 21 bytes, then the reference fields (flags bit 1)."""
    from remac.bitstream import modelfile
    payload = segments(stream.data)[0][1]
    assert len(payload) == 21 + 24
    assert tuple(payload[0:2]) == (4, 0)
    assert payload[2:10] == modelfile.load("grey").model_id
    assert struct.unpack_from(">HH", payload, 10) == (150, 100)
    assert payload[14] == 1 | 1 << 2 and payload[15] == 8                  # 1 coded, 1 output channel
    assert struct.unpack_from(">H", payload, 16) == (6000,)
    assert tuple(payload[18:21]) == (1, 1, 0b11)                            # 64 x 64 tiles; ref used + fields
    assert payload[21:29] == default_library.id_bytes
    assert payload[29:37] == bytes.fromhex(stream.entropy_ref)
    assert payload[37:45] == bytes.fromhex(stream.decoder_ref)
    plain = Header(b"m" * 8, 64, 64, 1, 1, 8, 42, 64, 64, quality_frac=5).pack()
    assert len(plain) == 21 and plain[20] == 0 and struct.unpack_from(">H", plain, 16) == (4205,)
    planar = Header(b"m" * 8, 99, 64, 3, 3, 8, 42, 64, 128, planes=1, chroma_shift=1, chroma_q100=5700).pack()
    assert len(planar) == 23 and planar[14] == 3 | 3 << 2 | 1 << 4 | 1 << 5
    assert tuple(planar[18:20]) == (1, 2) and struct.unpack_from(">H", planar, 21) == (5700,)


def test_header_fields_at_documented_offsets(stream_v1, stream, default_library):
    payload = segments(stream_v1)[0][1]
    assert len(payload) == 56
    assert payload[0] == 1 and payload[1] == 0
    from remac.bitstream import modelfile
    assert payload[2:10] == modelfile.load("grey").model_id
    assert payload[10:18] == default_library.id_bytes
    assert payload[18:26] == bytes.fromhex(stream.entropy_ref)
    assert payload[26:34] == bytes.fromhex(stream.decoder_ref)
    assert struct.unpack_from(">II", payload, 34) == (150, 100)
    assert tuple(payload[42:46]) == (1, 1, 8, 60)
    assert struct.unpack_from(">HHI", payload, 46) == (64, 64, 6)
    assert payload[54] == 1 and payload[55] == 0


def test_tile_payload_layout(stream, stream_v1):
    v4, v1 = segments(stream.data)[1:], segments(stream_v1)[1:-1]
    for i, ((_, compact, _), (_, payload, _)) in enumerate(zip(v4, v1, strict=True)):
        index, words = struct.unpack_from(">II", payload)
        assert index == i and len(payload) == 8 + 4 * words and words > 0
        assert struct.unpack_from(">I", compact) == (i,) and compact[4:] == payload[8:]


def test_container_round_trip():
    ids = {"library_id": b"L" * 8, "entropy_ref_id": b"E" * 8, "decoder_ref_id": b"D" * 8, "flags": 1}
    for version in ((1, 0), (4, 0)):
        for extra in ({}, ids, {"decoder_ref_id": b"D" * 8, "library_id": b"L" * 8}):
            h = Header(b"m" * 8, 130, 70, 3, 3, 8, 42, 64, 64, version=version, **extra)
            tiles = {i: np.arange(i, dtype=np.uint32) for i in range(h.tile_count)}    # tile 0: no words
            parsed = container.read(container.write(h, tiles))
            assert parsed.header == h and not parsed.damaged
            assert all(np.array_equal(parsed.tiles[i], tiles[i]) for i in tiles)


def _rehdr(data, offset, value: bytes):
    """Patch RHDR payload bytes and fix its CRC, so only the field check can object."""
    b = bytearray(data)
    (length,) = struct.unpack_from(">I", b, 8)
    b[16 + offset:16 + offset + len(value)] = value
    b[16 + length:20 + length] = struct.pack(">I", zlib.crc32(bytes(b[12:16 + length])))
    return bytes(b)


@pytest.mark.parametrize("offset,value,message", [
    (10, struct.pack(">H", 0), "image size 0x100 out of range"),
    (14, b"\x45", "unknown layout bits"),
    (14, b"\x09", "output_channels 2 invalid"),
    (15, b"\x0b", "bit_depth 11"),
    (16, struct.pack(">H", 10001), "quality 100.01 out of range"),
    (18, b"\x00", "not a multiple of 64 in 64..4096"),
    (19, b"\x41", "not a multiple of 64 in 64..4096"),
    (20, b"\x43", "unknown layout bits 0x00 or flags 0x43"),   # bits 2-5: refinement, quality map, colour, prior
    (20, b"\x06", "has 45 bytes, expected 56"),                 # refinement flagged, its 11 bytes absent
    (20, b"\x01", "has 45 bytes, expected 21"),                 # reference fields present but not flagged
    (20, b"\x02", "disagrees with entropy_ref_id"),
    (21, bytes(8), "library_id is zero"),
])
def test_bad_compact_header_fields_are_refused_by_name(stream, offset, value, message):
    with pytest.raises(FormatError, match=message):
        container.read(_rehdr(stream.data, offset, value))


@pytest.mark.parametrize("offset,value,message", [
    (0, b"\x05", "unsupported .rmc version 5.0"),
    (34, struct.pack(">I", 100000), "out of range"),
    (42, b"\x02", "coded_channels 2"),
    (44, b"\x0c", "bit_depth 12 is not one of 8, 16 \\(format 1.x\\)"),     # 12-bit needs 2.0
    (55, b"\x19", "reserved byte is not zero"),                             # so does a quality fraction
    (45, b"\x65", "quality 101"),
    (46, struct.pack(">H", 100), "multiple of 64"),
    (50, struct.pack(">I", 7), "tile_count 7"),
    (54, b"\x80", "unknown flags"),
])
def test_bad_header_fields_are_refused_by_name(stream_v1, offset, value, message):
    with pytest.raises(FormatError, match=message):
        container.read(_rehdr(stream_v1, offset, value))


def test_huge_image_refused_before_allocation(stream, stream_v1):
    with pytest.raises(FormatError, match="exceeds"):
        container.read(_rehdr(stream_v1, 34, struct.pack(">II", 60000, 60000)))
    with pytest.raises(FormatError, match="exceeds"):
        container.read(_rehdr(stream.data, 10, struct.pack(">HH", 60000, 60000)))


def test_framing_errors(stream, stream_v1):
    for data in (stream.data, stream_v1):
        end = 20 + struct.unpack_from(">I", data, 8)[0]     # the end of RHDR
        with pytest.raises(FormatError, match="signature"):
            container.read(b"\x89PNG\r\n\x1a\n" + data[8:])
        with pytest.raises(FormatError, match="CRC"):
            container.read(data[:20] + bytes([data[20] ^ 1]) + data[21:])
        unknown = container._segment(b"ZZZZ", b"x")
        with pytest.raises(FormatError, match="unknown critical segment ZZZZ"):
            container.read(data[:end] + unknown + data[end:])
        ancillary = container._segment(b"zzzz", b"x")
        assert not container.read(data[:end] + ancillary + data[end:]).damaged
    truncated = container.read(stream_v1[:-12])         # 1.0: only REND lost
    assert truncated.damaged and not truncated.missing()
    last = len(segments(stream.data)[-1][1]) + 12
    cut = container.read(stream.data[:-last])           # 4.0, cut at a segment boundary: the tile is missing
    assert not cut.damaged and cut.missing() == [5]
    cut = container.read(stream.data[:-3])              # ... inside a segment: damage, and missing
    assert cut.damaged and cut.missing() == [5]
    extra = container.read(stream.data + b"\0" * 7)
    assert extra.damaged == [(None, "7 unexpected bytes after the last tile")] and not extra.missing()


def test_version_2_header_layout(default_library):
    """A 12-bit image at quality 60.25: format 2.0, bit_depth 12 at offset 44, quality 60 at 45 and
    its hundredths at 55 (1.0's reserved byte); everything else as in 1.0."""
    img = from_samples(pixels(GREY)[:64, :64].astype(np.uint16) << 4, 16, "g12", bit_depth=12)
    r = encode(img, EncodeOptions(6025, library=default_library, tile=64))
    data = rewritten(r.data, (2, 0))
    payload = segments(data)[0][1]
    assert len(payload) == 56 and tuple(payload[0:2]) == (2, 0)
    assert tuple(payload[42:46]) == (1, 1, 12, 60) and payload[55] == 25
    h = container.read(data).header
    assert (h.version, h.bit_depth, h.quality, h.quality_frac, h.quality_value) == ((2, 0), 12, 60, 25, 60.25)


def test_streams_are_written_as_4_0_and_older_layouts_only_when_asked():
    assert Header(b"m" * 8, 64, 64, 1, 1, 8, 60, 64, 64).version == (4, 0)
    assert Header(b"m" * 8, 64, 64, 1, 1, 8, 60, 64, 64).lowest_version() == (1, 0)
    assert Header(b"m" * 8, 64, 64, 1, 1, 16, 60, 64, 64).lowest_version() == (1, 0)
    assert Header(b"m" * 8, 64, 64, 1, 1, 10, 60, 64, 64).lowest_version() == (2, 0)
    assert Header(b"m" * 8, 64, 64, 1, 1, 8, 60, 64, 64, quality_frac=5).lowest_version() == (2, 0)
    assert Header(b"m" * 8, 64, 64, 3, 3, 8, 60, 64, 64, planes=1).lowest_version() == (3, 0)


@pytest.mark.parametrize("fields,message", [
    ({"bit_depth": 11}, "bit_depth 11 is not one of 8, 10, 12, 14, 16"),
    ({"bit_depth": 12, "output_channels": 3, "coded_channels": 3}, "12-bit samples are defined for grey"),
    ({"quality": 100, "quality_frac": 1}, "quality_frac 1 invalid for quality 100"),
    ({"quality_frac": 100}, "quality_frac 100 invalid"),
])
def test_bad_version_2_fields(fields, message):
    h = Header(b"m" * 8, 64, 64, 1, 1, 12, 60, 64, 64)
    for k, v in fields.items():
        setattr(h, k, v)
    with pytest.raises(FormatError, match=message):
        container.read(container.write(h, {0: np.zeros(1, np.uint32)}))


def test_fractional_quality_interpolates_the_integer_gains_exactly():
    from remac.bitstream import modelfile, spec
    table = modelfile.load("grey").gain_int
    assert np.array_equal(spec.gain_int_at(table, 5000), table[50])
    assert np.array_equal(spec.gain_int_at(table, 10000), table[100])
    mid = spec.gain_int_at(table, 5025)
    assert mid.dtype == np.int64
    assert np.array_equal(mid, (table[50] * 75 + table[51] * 25 + 50) // 100)
    assert spec.quality_steps(50.555) == 5056 and spec.quality_steps(100) == 10000


def test_metadata_segment_layout_and_round_trip():
    from remac.bitstream import metadata
    meta = metadata.Metadata({"Title": "Sol 1234", "Note": "\u00b5m \u2713"}, b"MM\x00*rest", b"<x:xmpmeta/>")
    payload = metadata.pack(meta)
    # kind 1 (text), key length 5, "Title", u32 value length, UTF-8 value; then the others
    assert payload[:2] == b"\x01\x05" and payload[2:7] == b"Title"
    assert struct.unpack_from(">I", payload, 7) == (8,) and payload[11:19] == b"Sol 1234"
    assert payload.endswith(b"\x03\x00" + struct.pack(">I", 12) + b"<x:xmpmeta/>")
    assert metadata.unpack(payload) == meta
    assert metadata.unpack(payload + b"\x09\x00\x00\x00\x00\x01z") == meta      # unknown kind: skipped
    with pytest.raises(FormatError, match="truncated|claims"):
        metadata.unpack(payload[:-3])
    h = Header(b"m" * 8, 64, 64, 1, 1, 8, 42, 64, 64)
    data = container.write(h, {0: np.zeros(1, np.uint32)}, payload)
    segs = segments(data)
    assert [k for k, _, _ in segs] == [b"RHDR", b"meta", b"TILE"] and segs[1][1] == payload
    parsed = container.read(data)
    assert parsed.metadata == payload and not parsed.damaged and parsed.header.version == (4, 0)
