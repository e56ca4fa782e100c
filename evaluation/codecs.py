"""Classical codecs as rate-distortion baselines, all behind one small interface.

Every adapter has
    name: str                      e.g. "JPEG 2000"
    settings: list                 quality settings, ordered from lowest to highest rate
    supports(channels) -> bool     1 (grey) and/or 3 (RGB)
    encode(image, setting) -> bytes    image: uint8 (H, W) or (H, W, 3); the complete file
    decode(data, shape) -> ndarray     uint8 with the input image's shape

Rates are len(encode(...)): whole files, headers included, i.e. what would be stored or sent.
The settings cover roughly 0.05-1.5 bpp on a 256x256 Mars grey image and 0.1-2.5 bpp on colour
(one list serves both, so most run a little past one end; ICER goes to 4 bpp, see its class).
`available()` returns the adapters whose libraries import and round-trip.
"""
import ctypes
import io
import math
import threading

import numpy as np
from PIL import Image


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected uint8 (H,W) or (H,W,3), got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Grey -> three identical channels (for codecs whose lossy mode is RGB/YUV only)."""
    return np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2)) if image.ndim == 2 else image


def _to_shape(out: np.ndarray, shape) -> np.ndarray:
    """Decoded pixels -> uint8 of `shape`; a grey image sent as RGB comes back as one channel."""
    out = np.asarray(out)
    if len(shape) == 2 and out.ndim == 3:
        out = out[..., 0]
    if out.dtype != np.uint8:
        out = np.clip(out, 0, 255).astype(np.uint8)
    if out.shape != tuple(shape):
        raise ValueError(f"decoded shape {out.shape} != expected {tuple(shape)}")
    return np.ascontiguousarray(out)


class JPEG:
    """Baseline JPEG (libjpeg via Pillow), 4:2:0 chroma for colour (Pillow's default)."""

    name = "JPEG"
    settings = [1, 5, 12, 25, 40, 60, 75, 88]   # quality

    def supports(self, channels):
        return channels in (1, 3)

    def encode(self, image, setting):
        buf = io.BytesIO()
        Image.fromarray(_check(image)).save(buf, "JPEG", quality=int(setting), subsampling="4:2:0")
        return buf.getvalue()

    def decode(self, data, shape):
        return _to_shape(np.asarray(Image.open(io.BytesIO(data))), shape)


class JPEG2000:
    """JPEG 2000 (OpenJPEG via Pillow), 9/7 irreversible wavelet, one quality layer.

    Settings are compression ratios (raw bytes / coded bytes, as opj_compress -r), so the rate
    is about 8/ratio bpp for grey and 24/ratio bpp for colour. Colour uses the RCT/ICT
    (mct=1, opj_compress's default for three components). Output is a raw J2K codestream
    (no JP2 box wrapper, no_jp2=True): the minimal complete file.
    """

    name = "JPEG 2000"
    settings = [240, 150, 96, 56, 32, 18, 10, 5.5]

    def supports(self, channels):
        return channels in (1, 3)

    def encode(self, image, setting):
        image = _check(image)
        # OpenJPEG needs every resolution level to be at least 1 pixel: cap the level count.
        levels = min(6, int(math.log2(max(1, min(image.shape[:2])))) + 1)
        buf = io.BytesIO()
        Image.fromarray(image).save(
            buf, "JPEG2000", no_jp2=True, irreversible=True, quality_mode="rates",
            quality_layers=[float(setting)], num_resolutions=levels, mct=1 if image.ndim == 3 else 0)
        return buf.getvalue()

    def decode(self, data, shape):
        return _to_shape(np.asarray(Image.open(io.BytesIO(data))), shape)


class WebP:
    """Lossy WebP (libwebp via imagecodecs). Grey goes in as three equal channels (VP8 is
    YUV 4:2:0 anyway; flat chroma costs almost nothing) and comes back as one channel."""

    name = "WebP"
    settings = [0, 5, 15, 30, 50, 65, 80, 90]   # quality

    def __init__(self):
        import imagecodecs
        self._ic = imagecodecs

    def supports(self, channels):
        return channels in (1, 3)

    def encode(self, image, setting):
        # lossless=False matters: imagecodecs' webp_encode is lossless unless told otherwise.
        return bytes(self._ic.webp_encode(_as_rgb(_check(image)), level=float(setting), lossless=False))

    def decode(self, data, shape):
        return _to_shape(self._ic.webp_decode(data), shape)


class AVIF:
    """AVIF (libavif/AV1 via imagecodecs) at encoder speed `speed` (0 slowest/best .. 10): 6 is
    libavif's default, 2 the slow preset a thin downlink would pick (6-8 BD-rate points better on
    Mars frames). Colour is libavif's default YUV 4:4:4.

    imagecodecs encodes 2-D (monochrome) arrays losslessly whatever the level, so grey goes in
    as three equal channels with 4:2:0 chroma (flat chroma is nearly free) and comes back as one.
    """

    settings = [0, 10, 20, 30, 42, 55, 65, 82]   # quality 0 (worst) .. 100 (lossless)

    def __init__(self, speed: int = 6):
        import imagecodecs
        self._ic = imagecodecs
        self.speed = speed
        self.name = "AVIF" if speed == 6 else f"AVIF s{speed}"

    def supports(self, channels):
        return channels in (1, 3)

    def encode(self, image, setting):
        image = _check(image)
        kw = {"pixelformat": self._ic.AVIF.PIXEL_FORMAT.YUV420} if image.ndim == 2 else {}
        return bytes(self._ic.avif_encode(_as_rgb(image), level=int(setting), speed=self.speed, **kw))

    def decode(self, data, shape):
        return _to_shape(self._ic.avif_decode(data), shape)


class JPEGXL:
    """JPEG XL (libjxl via imagecodecs), VarDCT; settings are Butteraugli distances (lower =
    better quality, higher rate), so they are listed in decreasing order. Grey is coded as grey."""

    name = "JPEG XL"
    settings = [25.0, 12.0, 7.0, 4.5, 3.0, 2.0, 1.4, 0.9]

    def __init__(self):
        import imagecodecs
        self._ic = imagecodecs

    def supports(self, channels):
        return channels in (1, 3)

    def encode(self, image, setting):
        return bytes(self._ic.jpegxl_encode(_check(image), distance=float(setting)))

    def decode(self, data, shape):
        return _to_shape(self._ic.jpegxl_decode(data), shape)


class _IcerOutput(ctypes.Structure):
    """icer_output_data_buf_typedef from libicer's icer.h."""
    _fields_ = [("size_used", ctypes.c_size_t), ("size_allocated", ctypes.c_size_t),
                ("data_start", ctypes.POINTER(ctypes.c_uint8)),
                ("rearrange_start", ctypes.POINTER(ctypes.c_uint8))]


class ICER:
    """ICER, the MER/MSL wavelet codec (libicer by TheRealOrange, as bundled in pyicer), grey only.

    pyicer only exposes a decoder in Python, so the encoder is called through ctypes from the
    same extension module: icer_compress_image_uint16 on the 8-bit samples (the uint8 entry point
    only codes 7 bit planes). ICER is rate-controlled by a byte quota; settings are target bpp and
    the quota is ceil(bpp * W * H / 8). The encoder stops when the next segment would exceed the
    quota, so files come out at or just under it.

    Note: libicer writes a 28-byte header (with two CRC-32s) for every segment of every bit plane
    of every subband; with 6 segments that is about 2.4 bpp on a 256x256 image at the lossless
    end, and most of the bytes at low rates (88% at 0.05 bpp, 47% at 4 bpp on 256x256), which is
    why the settings reach 4 bpp: only there does the curve reach the other codecs' PSNR range.
    `header_bytes` reports that overhead; ICER(segments=1) cuts it about sixfold.
    libicer keeps its working state in globals, so calls are serialised with a lock.
    """

    name = "ICER"
    settings = [0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 4.0]   # target bpp (byte quota)
    FILTERS = "ABCDEFQ"            # enum icer_filter_types: A=0 .. F=5, Q=6
    HEADER = 28                    # sizeof(icer_image_segment_typedef)
    PREAMBLE = 0x605B
    _lock = threading.Lock()

    def __init__(self, stages=4, segments=6, filt="A"):
        import _pyicer                      # the extension module that ships with pyicer
        import pyicer
        self._pyicer = pyicer
        self.stages, self.segments, self.filt = stages, segments, filt
        if segments != 6:
            self.name = f"ICER {segments}seg"
        lib = ctypes.CDLL(_pyicer.__file__)   # same handle as the loaded module: shared globals
        lib.icer_init.restype = ctypes.c_int
        lib.icer_init.argtypes = []
        lib.icer_init_output_struct.restype = ctypes.c_int
        lib.icer_init_output_struct.argtypes = [ctypes.POINTER(_IcerOutput), ctypes.c_void_p,
                                                ctypes.c_size_t, ctypes.c_size_t]
        lib.icer_compress_image_uint16.restype = ctypes.c_int
        lib.icer_compress_image_uint16.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                                                   ctypes.c_uint8, ctypes.c_int, ctypes.c_uint8,
                                                   ctypes.POINTER(_IcerOutput)]
        # PyInit__pyicer already calls icer_init(); calling it again only rebuilds the same tables.
        if lib.icer_init() != 0:
            raise RuntimeError("icer_init failed")
        self._lib = lib

    def supports(self, channels):
        return channels == 1

    def encode(self, image, setting):
        image = _check(image)
        if image.ndim != 2:
            raise ValueError("ICER adapter is grey only")
        h, w = image.shape
        quota = max(1, math.ceil(float(setting) * w * h / 8))
        work = np.ascontiguousarray(image, dtype=np.uint16)   # a copy: transformed in place
        buf = (ctypes.c_uint8 * (2 * quota + 64))()           # data area + rearrange area
        out = _IcerOutput()
        with self._lock:
            if self._lib.icer_init_output_struct(ctypes.byref(out), buf, len(buf), quota) != 0:
                raise RuntimeError("icer_init_output_struct failed")
            res = self._lib.icer_compress_image_uint16(
                work.ctypes.data, w, h, self.stages, self.FILTERS.index(self.filt), self.segments,
                ctypes.byref(out))
        # 0: everything fitted (lossless); -5 (ICER_BYTE_QUOTA_EXCEEDED): stopped at the quota.
        if res not in (0, -5):
            raise RuntimeError(f"icer_compress_image_uint16 returned {res}")
        # The segments, reordered for the decoder, are copied to rearrange_start = data + quota.
        return ctypes.string_at(ctypes.addressof(buf) + quota, out.size_used)

    def decode(self, data, shape):
        out = self._pyicer.decompress(bytes(data), stages=self.stages, segments=self.segments,
                                      filter=self.filt, color=0)
        return _to_shape(out, shape)

    @classmethod
    def header_bytes(cls, data: bytes) -> int:
        """Bytes of libicer segment headers in `data` (the rest is entropy-coded payload)."""
        off = n = 0
        while off + cls.HEADER <= len(data):
            if int.from_bytes(data[off:off + 2], "little") != cls.PREAMBLE:
                break
            bits = int.from_bytes(data[off + 16:off + 20], "little")
            off += cls.HEADER + (bits + 7) // 8
            n += 1
        return n * cls.HEADER


# (class, kwargs): ICER twice, with the flight-typical 6 segments (error containment) and with 1
# segment (least header overhead), since its segment count trades robustness for rate.
ADAPTER_SPECS = [(JPEG, {}), (JPEG2000, {}), (WebP, {}), (AVIF, {}), (AVIF, {"speed": 2}), (JPEGXL, {}),
                 (ICER, {}), (ICER, {"segments": 1})]


def _make(spec):
    cls, kwargs = spec
    try:
        return cls(**kwargs)
    except Exception:       # library missing or broken: left out of ADAPTERS
        return None


ADAPTERS = [a for a in map(_make, ADAPTER_SPECS) if a is not None]


def _works(adapter) -> bool:
    """A tiny real round trip: the library imports AND encodes/decodes at its top setting."""
    yy, xx = np.mgrid[0:64, 0:64]
    grey = ((xx * 3 + yy * 2) % 256).astype(np.uint8)
    try:
        for channels in (1, 3):
            if adapter.supports(channels):
                img = grey if channels == 1 else np.stack([grey, grey[::-1], grey.T], axis=2)
                out = adapter.decode(adapter.encode(img, adapter.settings[-1]), img.shape)
                if out.shape != img.shape or out.dtype != np.uint8:
                    return False
        return True
    except Exception:
        return False


def available() -> list:
    """The adapters in ADAPTERS whose libraries import and do a working round trip."""
    return [a for a in ADAPTERS if _works(a)]
