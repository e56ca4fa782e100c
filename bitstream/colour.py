"""Colour as luma + chroma planes (format 3.0, docs/FORMAT.md "Planes"): the fixed transform.

    rover:  RGB (3,H,W) in [0,1] --to_planes--> [Y (H,W), Cb (h,w), Cr (h,w)], each in [0,1]
    ground: decoded planes --from_planes--> RGB (3,H,W) float (the caller clips and rounds)

Y, Cb, Cr are full-range BT.601 (JPEG/JFIF's YCbCr) with the chroma offset by 1/2. With
chroma_shift 1 the chroma planes are 2x2 box means (h, w = ceil(H/2), ceil(W/2); an odd last
row/column is edge-replicated first). The ground upsamples them guided by the decoded luma
(upsample_guided): bilinear with the samples at the box centres, plus the luma detail bilinear
cannot know, scaled by the local slope of chroma on luma. None of this feeds the range coder, so
it is float: it need not be bit-exact (it is deterministic).
"""
import numpy as np

YCBCR = np.array([[0.299, 0.587, 0.114],
                  [-0.168736, -0.331264, 0.5],
                  [0.5, -0.418688, -0.081312]])
RGB = np.linalg.inv(YCBCR)
CHROMA_OFFSET = 0.5
GUIDE_RADIUS = 2        # slope windows: (2r+1)^2 chroma samples
GUIDE_EPS = 3e-3        # slope regularisation (luma variance units): flat or noisy windows get ~0


ROWS = 64      # to_planes converts this many rows at a time (even: 2x2 chroma boxes never straddle two)


def to_planes(rgb: np.ndarray, shift: int) -> list:
    """(3,H,W) float in [0,1] -> [Y (H,W), Cb, Cr (ceil(H/2^shift), ceil(W/2^shift))] float32.

    Band by band of ROWS rows: every output sample is the same float64 arithmetic on the same
    inputs as over the whole frame at once (the 3x3 product per pixel, the box mean per 2x2 box),
    without the frame-sized float64 temporaries (a 1-Mpixel frame: 24 MiB each, ~5x slower in a
    fresh process, mostly in first touching their pages)."""
    _, h, w = rgb.shape
    k = 1 << shift
    out = [np.empty((h, w), np.float32)] + [np.empty((-(-h // k), -(-w // k)), np.float32) for _ in range(2)]
    for top in range(0, h, ROWS):
        ycc = np.tensordot(YCBCR, rgb[:, top:top + ROWS].astype(np.float64), axes=1)
        ycc[1:] += CHROMA_OFFSET
        planes = [ycc[0]] + [downsample(c, shift) for c in ycc[1:]]
        for plane, p, t in zip(out, planes, (top, top // k, top // k)):
            plane[t:t + p.shape[0]] = np.clip(p, 0, 1)
    return out


def downsample(plane: np.ndarray, shift: int) -> np.ndarray:
    """(H,W) -> (ceil(H/2^shift), ceil(W/2^shift)) box means (shift 0 or 1)."""
    if not shift:
        return plane
    h, w = plane.shape
    p = np.pad(plane, ((0, h % 2), (0, w % 2)), mode="edge")
    return p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).mean(axis=(1, 3))


def upsample(plane: np.ndarray, shift: int, height: int, width: int) -> np.ndarray:
    """(h,w) chroma -> (height, width): bilinear 2x with samples at the 2x2 box centres (shift 1),
    edges replicated; shift 0 only crops."""
    if shift:
        plane = _double(_double(plane.astype(np.float64), 0), 1)
    return plane[:height, :width]


def _double(a: np.ndarray, axis: int) -> np.ndarray:
    """Bilinear 2x along `axis`: out[2i] = 3/4 a[i] + 1/4 a[i-1], out[2i+1] = 3/4 a[i] + 1/4 a[i+1]
    (indices clamped at the edges)."""
    n = a.shape[axis]
    i = np.arange(n)
    before, after = np.take(a, np.maximum(i - 1, 0), axis=axis), np.take(a, np.minimum(i + 1, n - 1), axis=axis)
    pair = np.stack([0.75 * a + 0.25 * before, 0.75 * a + 0.25 * after], axis=axis + 1)
    shape = list(a.shape)
    shape[axis] = 2 * n
    return pair.reshape(shape)


def upsample_guided(chroma: list, luma: np.ndarray, shift: int) -> list:
    """[(h,w) decoded chroma planes], (H,W) decoded luma -> [(H,W) float64 chroma]: each plane c
    becomes upsample(c) + a * (luma - upsample(downsample(luma))), where a (h,w) is the ridge slope
    of c on the box-downsampled luma over each (2r+1)^2 window (cov / (var + GUIDE_EPS), then
    window-averaged), upsampled bilinearly. A plane that does not follow luma (a ~ 0) stays
    bilinear; shift 0 only crops."""
    height, width = luma.shape
    up = lambda p: upsample(p, shift, height, width)
    if not shift:
        return [up(c) for c in chroma]
    r = GUIDE_RADIUS
    low = downsample(luma.astype(np.float64), shift)
    detail = luma - up(low)
    mean = box_mean(low, r)
    var = box_mean(low * low, r) - mean * mean + GUIDE_EPS
    out = []
    for c in chroma:
        c = c.astype(np.float64)
        a = (box_mean(low * c, r) - mean * box_mean(c, r)) / var
        out.append(up(c) + up(box_mean(a, r)) * detail)
    return out


def box_mean(a: np.ndarray, r: int) -> np.ndarray:
    """(h,w) -> (h,w) means over (2r+1)^2 windows, edges replicated (summed-area table)."""
    k = 2 * r + 1
    s = np.pad(np.pad(a, r, mode="edge"), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]) / (k * k)


def from_planes(planes: list, shift: int) -> np.ndarray:
    """[Y (H,W), Cb, Cr] float in [0,1] -> (3,H,W) float64 RGB, not clipped (chroma upsampled
    guided by Y)."""
    luma = planes[0].astype(np.float64)
    ycc = np.stack([luma] + [c - CHROMA_OFFSET for c in upsample_guided(planes[1:], luma, shift)])
    return np.tensordot(RGB, ycc, axes=1)
