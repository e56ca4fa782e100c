"""Damaged streams and hostile headers: a clear error or a concealed image, never a crash."""
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from remac.bitstream import container
from remac.bitstream.container import Header, _HDR
from remac.bitstream.errors import RemacError
from remac.ground_decoder.decode import decode, entropy_decode
from tests.tools.fuzz import check, damage, shuffle_segments
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import load_image
from tests.conftest import GREY, psnr
from remac.rover_encoder.options import EncodeOptions


@pytest.fixture(scope="module")
def small_stream(default_library):
    img = load_image(GREY)
    img.pixels = img.pixels[:, :64, :128]           # two 64x64 tiles
    r = encode(img, EncodeOptions(5000, library=default_library, tile=64))
    return r.data, decode(r.data, default_library)


def rhdr_end(data: bytes) -> int:
    """Offset of the first segment after the signature and RHDR (RHDR's length varies in 4.0)."""
    import struct
    return 8 + 12 + struct.unpack_from(">I", data, 8)[0]


def test_truncation_at_every_offset(small_stream, default_library):
    """Cut inside the header: refused. Cut after the first whole tile: an image, later tiles lost.
    Cut before any tile is whole: refused ("no tile could be decoded")."""
    import struct
    data, full = small_stream
    header_end = rhdr_end(data)
    first_tile_end = header_end + 12 + struct.unpack_from(">I", data, header_end)[0]
    for n in range(len(data)):
        if n < header_end:
            with pytest.raises(RemacError):
                entropy_decode(data[:n], default_library)
        else:
            assert entropy_decode(data[:n], default_library)[5], n      # problems reported, no exception
        if n % 32 == 0 or n in (first_tile_end - 1, first_tile_end):   # and the full path, now and then
            expected = "refused" if n < first_tile_end else "concealed"
            assert check(data[:n], default_library, full.image.shape) == expected, n


def test_broken_length_field_loses_one_tile_and_resyncs(small_stream, default_library):
    data, full = small_stream
    first_tile = rhdr_end(data)
    b = bytearray(data)
    b[first_tile:first_tile + 4] = b"\xff\xff\xff\x00"       # tile 0's length field
    out = decode(bytes(b), default_library)
    assert out.lost_tiles == [0]
    assert psnr(out.image[:, 80:], full.image[:, 80:]) > 35


def test_damaged_tile_is_concealed_and_named_or_refused_with_strict(small_stream, default_library):
    data, full = small_stream
    b = bytearray(data)
    b[-30] ^= 0xFF                             # inside the last TILE segment
    out = decode(bytes(b), default_library)
    assert out.lost_tiles == [1] and "lost tiles 1" in out.warnings[0]
    # the intact tile survives; only its border sees the concealed neighbour through the decoder
    assert psnr(out.image[:, :48], full.image[:, :48]) > 33
    with pytest.raises(RemacError, match="damaged stream"):
        decode(bytes(b), default_library, strict=True)


def test_shuffled_segments_decode_identically_or_refuse(small_stream, default_library):
    data, full = small_stream
    for seed in range(10):
        shuffled = shuffle_segments(data, random.Random(seed))
        try:
            out = decode(shuffled, default_library)
        except RemacError:
            continue                           # RHDR not first: refused by name
        # tiles in any order decode identically; tiles after REND are reported damage
        assert np.array_equal(out.image, full.image) or out.warnings


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_damage_never_breaks_the_contract(small_stream, default_library, seed):
    data, full = small_stream
    check(damage(data, random.Random(seed)), default_library, full.image.shape)


@settings(max_examples=60, deadline=None)
@given(garbage=st.binary(min_size=0, max_size=200))
def test_arbitrary_bytes_after_the_signature_are_refused_or_decoded(garbage):
    try:
        decode(b"\x89RMC\r\n\x1a\n" + garbage)
    except RemacError:
        pass


def test_plausible_damaged_length_loses_only_its_tile(small_stream, default_library):
    """The length grows by 4 (still inside the file): the CRC fails, the length is not trusted."""
    import struct
    data, full = small_stream
    first_tile = rhdr_end(data)
    b = bytearray(data)
    (length,) = struct.unpack_from(">I", b, first_tile)
    struct.pack_into(">I", b, first_tile, length + 4)
    out = decode(bytes(b), default_library)
    assert out.lost_tiles == [0]


def _forged(header: Header, tiles=None) -> bytes:
    """A stream whose RHDR (1.0 layout) passes its CRC but carries hostile field combinations."""
    return (container.SIGNATURE + container._segment(b"RHDR", _HDR.pack(1, 0, header.model_id,
            header.library_id, header.entropy_ref_id, header.decoder_ref_id, header.width, header.height,
            header.coded_channels, header.output_channels, header.bit_depth, header.quality, header.tile_width,
            header.tile_height, header.tile_count, header.flags, 0)) + container._segment(b"REND", b""))


@pytest.mark.parametrize("fields,message", [
    ({"flags": 1}, "disagrees with entropy_ref_id"),
    ({"decoder_ref_id": b"\x01" * 8}, "without a library_id"),
    ({"output_channels": 3, "coded_channels": 3, "bit_depth": 16}, "16-bit samples"),
])
def test_forged_headers_with_valid_crc_are_refused(fields, message):
    from remac.bitstream import modelfile
    h = Header(modelfile.load("grey").model_id, 64, 64, 1, 1, 8, 50, 64, 64)
    for k, v in fields.items():
        setattr(h, k, v)
    with pytest.raises(RemacError, match=message):
        decode(_forged(h))
    if "library_id" not in message:         # 4.0 cannot carry reference IDs without a library ID
        compact = bytearray(Header(h.model_id, 64, 64, 1, 1, 8, 50, 64, 64).pack())
        compact[14], compact[15] = h.coded_channels | h.output_channels << 2, h.bit_depth
        compact[20] = h.flags
        with pytest.raises(RemacError, match=message):
            decode(container.SIGNATURE + container._segment(b"RHDR", bytes(compact)))


def test_huge_header_without_tiles_is_refused_without_synthesis():
    from remac.bitstream import modelfile
    h = Header(modelfile.load("grey").model_id, 16384, 16384, 3, 3, 8, 50, 64, 64, planes=1, chroma_shift=1)
    data = container.SIGNATURE + container._segment(b"RHDR", h.pack()) + container._segment(b"REND", b"")
    with pytest.raises(RemacError, match="no tile could be decoded"):
        decode(data)
