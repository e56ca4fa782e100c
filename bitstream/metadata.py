"""The ancillary `meta` segment: image metadata carried from the rover's file to the ground's.

    payload = entries, each:  u8 kind | u8 key_length | key | u32 value_length | value   (big-endian)
    kind 1  text   key: PNG keyword (1..79 Latin-1 bytes); value: UTF-8 text (tEXt/zTXt/iTXt, JPEG COM)
    kind 2  EXIF   key empty; value: the EXIF TIFF structure ("II*\\0" or "MM\\0*" onward, as in PNG eXIf)
    kind 3  XMP    key empty; value: the UTF-8 XMP packet

Unknown kinds are skipped (later versions may add some). The segment is ancillary, so a decoder
that does not know it, or finds it damaged, decodes the image without the metadata.

The PDS product ID of an archive image (PDS3 PRODUCT_ID, PDS4 LIDVID) is the text entry keyed
PDS:PRODUCT_ID: an ordinary text entry, so that any reader of the segment restores it to the
decoded PNG as a text chunk; Metadata.product_id names it.
"""
import struct
from dataclasses import dataclass, field

from remac.bitstream.errors import FormatError

TEXT, EXIF, XMP = 1, 2, 3
PRODUCT_ID_KEY = "PDS:PRODUCT_ID"
_ENTRY = struct.Struct(">BB")
_LENGTH = struct.Struct(">I")


@dataclass
class Metadata:
    text: dict = field(default_factory=dict)     # keyword -> str, in file order
    exif: bytes = None                            # TIFF-structured EXIF (no "Exif\0\0" prefix)
    xmp: bytes = None

    def __bool__(self):
        return bool(self.text or self.exif or self.xmp)

    @property
    def product_id(self):
        """The PDS product ID the image came from (text entry PDS:PRODUCT_ID), or None."""
        return self.text.get(PRODUCT_ID_KEY)

    def describe(self) -> list:
        """Short names of what is carried besides the product ID, for people: ['EXIF 120 bytes',
        'text: Title, Author']."""
        out = [f"{name} {len(v)} bytes" for name, v in (("EXIF", self.exif), ("XMP", self.xmp)) if v]
        keys = [k for k in self.text if k != PRODUCT_ID_KEY]
        if keys:
            out.append("text: " + ", ".join(keys))
        return out


def pack(meta: Metadata) -> bytes:
    """-> segment payload (b"" when there is nothing to carry)."""
    parts = []

    def entry(kind, key: bytes, value: bytes):
        parts.append(_ENTRY.pack(kind, len(key)) + key + _LENGTH.pack(len(value)) + value)

    for key, value in meta.text.items():
        k = key.encode("latin-1", "replace")
        if not 1 <= len(k) <= 79:
            continue                              # not a PNG keyword: cannot be restored as one
        entry(TEXT, k, value.encode("utf-8"))
    if meta.exif:
        entry(EXIF, b"", meta.exif)
    if meta.xmp:
        entry(XMP, b"", meta.xmp)
    return b"".join(parts)


def unpack(payload: bytes) -> Metadata:
    """Segment payload -> Metadata. Raises FormatError naming the problem if it is malformed."""
    meta, pos = Metadata(), 0
    while pos < len(payload):
        if pos + 2 > len(payload):
            raise FormatError(f"meta segment: entry at byte {pos} is truncated")
        kind, key_len = _ENTRY.unpack_from(payload, pos)
        start = pos + 2 + key_len
        if start + 4 > len(payload):
            raise FormatError(f"meta segment: entry at byte {pos} is truncated")
        (value_len,) = _LENGTH.unpack_from(payload, start)
        key, value = payload[pos + 2:start], payload[start + 4:start + 4 + value_len]
        if len(value) != value_len:
            raise FormatError(f"meta segment: entry at byte {pos} claims {value_len} bytes, has {len(value)}")
        try:
            if kind == TEXT:
                meta.text[key.decode("latin-1")] = value.decode("utf-8")
            elif kind == EXIF:
                meta.exif = value
            elif kind == XMP:
                meta.xmp = value
        except UnicodeDecodeError:
            raise FormatError(f"meta segment: text entry {key!r} is not UTF-8") from None
        pos = start + 4 + value_len
    return meta
