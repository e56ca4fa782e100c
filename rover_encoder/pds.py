"""PDS3 and PDS4 products (the Mars archives' images) as encoder inputs, read with the optional
`pdr` package (pip install 'remac[pds]'; imported only when a PDS input is met).

    PDS3  NAME.IMG with an attached label, or NAME.LBL (detached label) beside its data file
    PDS4  NAME.xml (label) beside its data file

Samples: 8-bit, or up to 16 bits in 16-bit words (either byte order). The true depth comes from the
label (PDS3 SAMPLE_BIT_MASK, else SAMPLE_BITS; PDS4 the array's Object_Statistics bit_mask, else an
img:sample_bit_mask / sample_bits), rounded up to a coded depth; --bit-depth overrides it. One band
(grey) or three (RGB), in whatever band storage pdr reads (PDS3: band-sequential, line- or
sample-interleaved; PDS4: any axis order, by axis name). The product ID (PDS3 PRODUCT_ID, PDS4
logical_identifier::version_id) travels as the stream's PDS:PRODUCT_ID text entry and ends up in
the decoded PNG.
"""
import re
import warnings as _warnings
from pathlib import Path

import numpy as np

from remac.bitstream.errors import RemacError
from remac.bitstream.metadata import PRODUCT_ID_KEY, Metadata
from remac.rover_encoder.imageio import SourceImage, from_samples

INSTALL_HINT = "pip install 'remac[pds]'"
SUFFIXES = (".img", ".lbl", ".xml")
_PDS3_START = re.compile(rb"\s*(PDS_VERSION_ID|ODL_VERSION_ID|CCSD3ZF)")
_IMAGE_POINTER = re.compile(rb"^\s*\^IMAGE\s*=", re.MULTILINE)
_PDS4_IMAGE = re.compile(rb"<Array_[23]D_Image\b")
_LABEL_SCAN = 1 << 20                 # bytes of a label searched when a directory is listed


def _head(path: Path, n: int = _LABEL_SCAN) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def has_attached_label(data: bytes) -> bool:
    """Whether file bytes begin with a PDS3 label (an attached-label product)."""
    return _PDS3_START.match(data[:64]) is not None


def is_product_file(path: Path) -> bool:
    """Whether a file found in a directory input is a PDS product, counted once: a detached PDS3
    label (.lbl with an ^IMAGE pointer), a PDS4 label of an image array (.xml), or a .img with an
    attached PDS3 label and no label file of its own name beside it. The data files of detached
    labels are not products of their own (their bytes begin with no label)."""
    suffix = path.suffix.lower()
    if suffix == ".lbl":
        return _IMAGE_POINTER.search(_head(path)) is not None
    if suffix == ".xml":
        head = _head(path)
        return b"pds.nasa.gov/pds4" in head and _PDS4_IMAGE.search(head) is not None
    if suffix == ".img":
        return has_attached_label(_head(path, 64)) and not any(
            (path.parent / (path.stem + ext)).is_file() for ext in (".lbl", ".LBL", ".xml", ".XML"))
    return False


def is_product_input(inp: str, head: bytes = b"") -> bool:
    """Whether an input file is read as a PDS product: by its name (.img, .lbl, .xml), or by
    bytes beginning with a PDS3 label."""
    return Path(inp).suffix.lower() in SUFFIXES or has_attached_label(head)


def _pdr(name: str):
    try:
        import pdr
    except ImportError:
        raise RemacError(f"{name}: reading PDS products needs the pdr package: {INSTALL_HINT}") from None
    return pdr


def _blocks(meta):
    """(name, block) of every nested block of a pdr label, depth first."""
    for key, value in meta.items():
        if hasattr(value, "items"):
            yield key, value
            yield from _blocks(value)


def _image_key(data, name: str, caught: list) -> str:
    """The product's image object: IMAGE (PDS3), else the first object that is a 2-D or 3-D array.
    caught: the warnings pdr issued so far (it reports objects it cannot load as warnings)."""
    keys, failures = [k for k in data.keys() if k.upper() != "LABEL"], []
    for key in sorted(keys, key=lambda k: k.upper() != "IMAGE"):
        try:
            value = data[key]
        except Exception as exc:      # noqa: BLE001  (a table pdr cannot read is not the image)
            failures.append(f"{key}: {type(exc).__name__}: {exc}")
            continue
        if isinstance(value, np.ndarray) and value.ndim in (2, 3):
            return key
    failures += [str(w.message) for w in caught if "Unable to load" in str(w.message)]
    why = f"; {'; '.join(failures)}" if failures else ""
    raise RemacError(f"{name}: PDS product holds no image array (objects: {', '.join(keys) or 'none'}{why})")


def _mask_bits(value):
    """Significant bits of a bit mask: an int, PDS3 radix notation (2#0000111111111111#) or a PDS4
    binary string ('0000111111111111'); None if unreadable."""
    if isinstance(value, (int, np.integer)):
        return int(value).bit_length() or None
    text = str(value).strip()
    radix = re.fullmatch(r"(\d+)#([0-9A-Fa-f]+)#", text)
    try:
        mask = int(radix[2], int(radix[1])) if radix else int(text, 2)
    except (ValueError, TypeError):
        return None
    return mask.bit_length() or None


def _find(block, *names):
    """The first value in `block` (searched depth first) whose key, less any namespace prefix, is one
    of `names` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    for key, value in block.items():
        if key.split(":")[-1].lower() in wanted and not hasattr(value, "items"):
            return value
        if hasattr(value, "items"):
            found = _find(value, *names)
            if found is not None:
                return found
    return None


def _pds4_array(data, key: str):
    """The PDS4 label block (Array_2D_Image, ...) of the array `key`, or None for PDS3."""
    arrays = [block for name, block in _blocks(data.metadata) if name.startswith("Array_")]
    for block in arrays:
        if block.get("local_identifier") == key:
            return block
    return arrays[0] if arrays else None


def _declared_bits(data, key: str, block):
    """Significant bits the label declares for the image's samples, or None."""
    if block is None:                                       # PDS3: the IMAGE object's keywords
        obj = data.metablock_(key) or {}
        mask, bits = obj.get("SAMPLE_BIT_MASK"), obj.get("SAMPLE_BITS")
    else:                                                   # PDS4: the array's statistics, the img dictionary
        mask = _find(block, "bit_mask") or _find(data.metadata, "sample_bit_mask")
        bits = _find(data.metadata, "sample_bits")
    if mask is not None and _mask_bits(mask):
        return _mask_bits(mask)
    try:
        return int(bits) if bits is not None else None
    except (TypeError, ValueError):
        return None


def _band_axis(block, ndim: int):
    """Index of the band axis of a 3-D PDS4 array (by axis name), or 0 (pdr's PDS3 order)."""
    if block is None or ndim != 3:
        return 0
    axes = [b for name, b in _blocks(block) if name == "Axis_Array"]
    try:
        names = [a.get("axis_name", "").lower() for a in sorted(axes, key=lambda a: int(a.get("sequence_number")))]
    except (TypeError, ValueError):
        names = [a.get("axis_name", "").lower() for a in axes]
    return names.index("band") if "band" in names else 0


def product_id(data, block) -> str:
    """PDS3 PRODUCT_ID, or the PDS4 LIDVID (logical_identifier::version_id); None when absent."""
    if block is None:
        value = data.metaget_("PRODUCT_ID")
        return None if value is None else str(value).strip().strip('"')
    lid, vid = data.metaget_("logical_identifier"), data.metaget_("version_id")
    if lid is None:
        return None
    return f"{lid}::{vid}" if vid is not None else str(lid)


def load_product(path: str, bit_depth: int = None) -> SourceImage:
    """A PDS3 or PDS4 product -> SourceImage, with its product ID in the metadata. Raises RemacError
    with a one-line reason for anything unusable (or for a missing pdr)."""
    pdr = _pdr(path)
    if not Path(path).is_file():
        raise RemacError(f"{path}: no such file")
    caught = []
    try:
        with _warnings.catch_warnings(record=True) as caught:
            _warnings.simplefilter("always")
            data = pdr.read(path)
            key = _image_key(data, path, caught)
            a = data[key]
    except RemacError:
        raise
    except MemoryError:
        raise
    except Exception as exc:          # noqa: BLE001  (pdr raises many types on labels it cannot follow)
        raise RemacError(f"{path}: cannot read PDS product ({type(exc).__name__}: {exc})") from None
    block = _pds4_array(data, key)
    a = np.asarray(np.ma.getdata(a))
    if a.dtype.kind == "f":
        raise RemacError(f"{path}: floating-point samples ({a.dtype}) are not supported (8- or 16-bit integers)")
    if a.dtype.kind not in "ui" or a.dtype.itemsize > 2:
        raise RemacError(f"{path}: {a.dtype.itemsize * 8}-bit {a.dtype.kind} samples are not supported "
                         "(8- or 16-bit integers)")
    if a.ndim == 3:
        a = np.moveaxis(a, _band_axis(block, a.ndim), -1)   # -> (lines, samples, bands)
        if a.shape[-1] == 1:
            a = a[..., 0]
        elif a.shape[-1] != 3:
            raise RemacError(f"{path}: {a.shape[-1]} bands; REMAC codes 1 (grey) or 3 (RGB)")
    container = 8 * a.dtype.itemsize
    a = a.astype(np.uint8 if container == 8 else np.int32 if a.dtype.kind == "i" else np.uint16, copy=False)
    if a.dtype == np.int32 and a.size and a.min() < 0:
        raise RemacError(f"{path}: negative samples (min {a.min()}) are not supported")
    h, w = a.shape[:2]
    if w > 65535 or h > 65535 or w * h > 2 ** 28:
        raise RemacError(f"{path}: image {w}x{h} exceeds REMAC's limits (sides <= 65535, <= 2^28 pixels)")
    meta = Metadata()
    pid = product_id(data, block)
    if pid:
        meta.text[PRODUCT_ID_KEY] = pid
    notes = [f"{path}: pdr: {w.message}" for w in caught if not issubclass(w.category, DeprecationWarning)]
    return from_samples(a, container, path, bit_depth, _declared_bits(data, key, block), "the label's bit depth",
                        notes, meta)
