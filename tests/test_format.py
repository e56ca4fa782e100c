"""The .rmc byte layout, checked field by field against docs/FORMAT.md."""
import struct
import zlib

import numpy as np
import pytest

from bitstream import container
from bitstream.container import Header
from bitstream.errors import FormatError
from rover_encoder.encode import encode
from rover_encoder.imageio import load_image
from tests.conftest import GREY


@pytest.fixture(scope="module")
def stream(default_library):
    img = load_image(GREY)
    img.pixels = img.pixels[:, :100, :150]          # 100x150 -> 2x3 tiles of 64
    return encode(img, 60, default_library, tile=64, keep_refs=True)     # the layout with references


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


def test_signature_and_segment_framing(stream):
    data = stream.data
    assert data[:8] == b"\x89RMC\r\n\x1a\n"
    segs = segments(data)
    assert [k for k, _, _ in segs] == [b"RHDR"] + [b"TILE"] * 6 + [b"REND"]
    for kind, payload, crc in segs:
        assert crc == zlib.crc32(kind + payload)
    assert segs[-1][1] == b""


def test_header_fields_at_documented_offsets(stream, default_library):
    payload = segments(stream.data)[0][1]
    assert len(payload) == 56
    assert payload[0] == 1 and payload[1] == 0
    from bitstream import modelfile
    assert payload[2:10] == modelfile.load("grey").model_id
    assert payload[10:18] == default_library.id_bytes
    assert payload[18:26] == bytes.fromhex(stream.entropy_ref)
    assert payload[26:34] == bytes.fromhex(stream.decoder_ref)
    assert struct.unpack_from(">II", payload, 34) == (150, 100)
    assert tuple(payload[42:46]) == (1, 1, 8, 60)
    assert struct.unpack_from(">HHI", payload, 46) == (64, 64, 6)
    assert payload[54] == 1 and payload[55] == 0


def test_tile_payload_layout(stream):
    for i, (_, payload, _) in enumerate(segments(stream.data)[1:-1]):
        index, words = struct.unpack_from(">II", payload)
        assert index == i and len(payload) == 8 + 4 * words and words > 0


def test_container_round_trip():
    h = Header(b"m" * 8, 130, 70, 3, 3, 8, 42, 64, 64)
    tiles = {i: np.arange(i + 1, dtype=np.uint32) for i in range(h.tile_count)}
    parsed = container.read(container.write(h, tiles))
    assert parsed.header == h and not parsed.damaged
    assert all(np.array_equal(parsed.tiles[i], tiles[i]) for i in tiles)


def _rehdr(data, offset, value: bytes):
    """Patch RHDR payload bytes and fix its CRC, so only the field check can object."""
    b = bytearray(data)
    b[16 + offset:16 + offset + len(value)] = value
    b[72:76] = struct.pack(">I", zlib.crc32(bytes(b[12:72])))
    return bytes(b)


@pytest.mark.parametrize("offset,value,message", [
    (0, b"\x04", "unsupported .rmc version 4.0"),
    (34, struct.pack(">I", 100000), "out of range"),
    (42, b"\x02", "coded_channels 2"),
    (44, b"\x0c", "bit_depth 12 is not one of 8, 16 \\(format 1.x\\)"),     # 12-bit needs 2.0
    (55, b"\x19", "reserved byte is not zero"),                             # so does a quality fraction
    (45, b"\x65", "quality 101"),
    (46, struct.pack(">H", 100), "multiple of 64"),
    (50, struct.pack(">I", 7), "tile_count 7"),
    (54, b"\x80", "unknown flags"),
])
def test_bad_header_fields_are_refused_by_name(stream, offset, value, message):
    with pytest.raises(FormatError, match=message):
        container.read(_rehdr(stream.data, offset, value))


def test_huge_image_refused_before_allocation(stream):
    bad = _rehdr(stream.data, 34, struct.pack(">II", 60000, 60000))
    with pytest.raises(FormatError, match="exceeds"):
        container.read(bad)


def test_framing_errors(stream):
    data = stream.data
    with pytest.raises(FormatError, match="signature"):
        container.read(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(FormatError, match="CRC"):
        container.read(data[:20] + bytes([data[20] ^ 1]) + data[21:])
    unknown = container._segment(b"ZZZZ", b"x")
    with pytest.raises(FormatError, match="unknown critical segment ZZZZ"):
        container.read(data[:76] + unknown + data[76:])
    ancillary = container._segment(b"zzzz", b"x")
    assert not container.read(data[:76] + ancillary + data[76:]).damaged
    truncated = container.read(data[:-12])
    assert truncated.damaged and not truncated.missing()


def test_version_2_header_layout(default_library):
    """A 12-bit image at quality 60.25: format 2.0, bit_depth 12 at offset 44, quality 60 at 45 and
    its hundredths at 55 (1.0's reserved byte); everything else as in 1.0."""
    img = load_image(GREY, bit_depth=12)
    img.pixels = img.pixels[:, :64, :64]
    r = encode(img, 60.25, default_library, tile=64)
    payload = segments(r.data)[0][1]
    assert len(payload) == 56 and tuple(payload[0:2]) == (2, 0)
    assert tuple(payload[42:46]) == (1, 1, 12, 60) and payload[55] == 25
    h = container.read(r.data).header
    assert (h.version, h.bit_depth, h.quality, h.quality_frac, h.quality_value) == ((2, 0), 12, 60, 25, 60.25)


def test_streams_are_written_at_the_lowest_version_that_fits():
    assert Header(b"m" * 8, 64, 64, 1, 1, 8, 60, 64, 64).version == (1, 0)
    assert Header(b"m" * 8, 64, 64, 1, 1, 16, 60, 64, 64).version == (1, 0)
    assert Header(b"m" * 8, 64, 64, 1, 1, 10, 60, 64, 64).version == (2, 0)
    assert Header(b"m" * 8, 64, 64, 1, 1, 8, 60, 64, 64, quality_frac=5).version == (2, 0)


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
    from bitstream import modelfile, spec
    table = modelfile.load("grey").gain_int
    assert np.array_equal(spec.gain_int_at(table, 5000), table[50])
    assert np.array_equal(spec.gain_int_at(table, 10000), table[100])
    mid = spec.gain_int_at(table, 5025)
    assert mid.dtype == np.int64
    assert np.array_equal(mid, (table[50] * 75 + table[51] * 25 + 50) // 100)
    assert spec.quality_steps(50.555) == 5056 and spec.quality_steps(100) == 10000


def test_metadata_segment_layout_and_round_trip():
    from bitstream import metadata
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
    assert [k for k, _, _ in segs] == [b"RHDR", b"meta", b"TILE", b"REND"] and segs[1][1] == payload
    parsed = container.read(data)
    assert parsed.metadata == payload and not parsed.damaged and parsed.header.version == (1, 0)
