"""Refinement layers: the same latent quantized again at a finer quality, coded only inside the
interval that the layers below already fixed (nested quantization; docs/FORMAT.md, "Refinement
layers").

A layer below (the base, quality a) left, per latent element, its symbol s_a and mean mu16_a:
P = 16 s_a + mu16_a is 16 y g_a rounded, in integers. The refinement at quality b codes the tile
exactly as a one-shot stream at b would (z_b, then mu16_b / idx_b from the integer network,
channel and spatial context from the refined symbols), except that each symbol s_b is coded with
its table restricted to the symbols whose bins meet the base's interval, each weighted by how
much of its bin lies inside, renormalised (Interval, all integers):

    16 y g_a in core [P - 8, P + 8)                       the base bin
             in wide [P - 8 - 8 [s_a <= 0], P + 8 + 8 [s_a >= 0])   ... widened half a step away
                                                                        from zero
    16 y g_b = those * G_b / G_a                          (G: integer gains)
    s_b in lo .. hi: the fine bins [16 s_b + mu16_b - 8, 16 s_b + mu16_b + 8) that meet `wide`
    weight of s_b = counts[idx_b][s_b] * (its length in `wide` + 3 * its length in `core`)

            base bin s_a                         fine bins s_b (gain ~4x finer)
      |.....[=========)......|                  |..|..|==|==|==|==|..|..|
       wide  core      wide                      weights: small at the edges,
                                                 CORE = 4x inside the core

Weighting by the overlap stops a fine bin that straddles an edge from being paid for by both
base bins; the widening covers the rover's rate-distortion choice (entropy.rdo_symbols): it moves
a symbol one step towards zero only where 2 d < lambda * (bits saved), d the distance of
y g_a - mu_a past the bin edge, so with lambda = 0.05 (encode.RDO_LAMBDA) and at most 16 bits
saved within a table, d < 0.4 of a step. The one-shot stream's symbol at b is therefore inside
lo .. hi (every one of them on four of five images, all but a few on the fifth, docs/BENCHMARKS.md
session 16) and base + layer reconstruct what the one-shot stream at b does. An encoder that moves
symbols further only loses quality (its symbols are clipped into lo .. hi), never decodability.
Measured (q20 -> q75, mean of 5): strict base bin 0.7 dB lost on one image; widened a whole step,
unweighted 1.034x the one-shot bytes; half a step 1.034x; + overlap weights 1.030x; + core weight
4 1.024x (16: 1.025x; a whole step with weight 4: 1.026x).

Coding a unit (the same coding units, in the same order, as bitstream.latent):

    every symbol: a = lo - offset, b = hi - offset clipped to the table 0 .. size-1; escape
    allowed where lo .. hi leaves the table
    full rows (the core holds every bin of the table, escape allowed): the table itself, grouped
        by scale index as in a one-shot stream (entropy.encode_groups, escapes after each group)
    restricted rows, grouped by width class K = 8, 16, 32, ... (the smallest power of two, at
        least 8, holding n = b - a + 1 entries plus the escape), each class in raster order:
        Categorical over the weights of entries a .. b (+ the escape count * 4 whole bins),
        zero-padded to K; then the class's escaped values, two Uniform(256) each (value + 32768,
        high byte first)
"""
import hashlib
from dataclasses import dataclass, fields

import constriction
import numpy as np

from remac.bitstream import entropy, intnet, latent, spec

_ROWS = constriction.stream.model.Categorical(perfect=False)     # probabilities given per row
MIN_CLASS = 8
_CLASSES = MIN_CLASS << np.arange(16, dtype=np.int64)      # 8, 16, ..., 2^18: wider than any table
WIDEN = 8           # 1/16 of a base step added to the base bin on each side away from zero (module doc)
UNBOUNDED = 2 ** 62     # the edges of a free element's interval
CORE = 4            # weight of a fine bin's part inside the base bin itself; 1 in the widened margin


def stream_id(data: bytes) -> bytes:
    """The ID a refinement names its layer below by: the first 8 bytes of SHA-256 of that whole
    stream's bytes (a refinement's own bytes name its base in turn, so one ID pins the chain)."""
    return hashlib.sha256(bytes(data)).digest()[:8]


@dataclass
class Interval:
    """What the layer below allows, per element (all (n,) int64). Every edge is a value of
    16 y g_b times G_a, an integer:

        core [c_lo, c_hi) = [(P-8) G_b, (P+8) G_b)         the base bin        P = 16 s_a + mu16_a
        wide [e_lo, e_hi) = core widened by WIDEN G_b away from zero
        fine bin of s     = [16 s G_a + b0, ... + 16 G_a)   b0 = (mu16_b - 8) G_a
        lo .. hi          = the s whose fine bin meets `wide`
    """
    lo: np.ndarray
    hi: np.ndarray
    e_lo: np.ndarray
    e_hi: np.ndarray
    c_lo: np.ndarray
    c_hi: np.ndarray
    b0: np.ndarray
    g_a: np.ndarray

    def __getitem__(self, sel) -> "Interval":
        return Interval(*(getattr(self, f.name)[sel] for f in fields(self)))

    def weight(self, s: np.ndarray) -> np.ndarray:
        """(n, k) symbols -> (n, k) int64: each fine bin's length inside `wide` plus (CORE - 1) times
        its length inside `core` (a whole bin inside the core weighs CORE * 16 G_a)."""
        col = lambda v: v[:, None]
        start, width = 16 * s * col(self.g_a) + col(self.b0), col(16 * self.g_a)
        inside = lambda lo, hi: np.clip(np.minimum(start + width, col(hi)) - np.maximum(start, col(lo)), 0, width)
        return inside(self.e_lo, self.e_hi) + (CORE - 1) * inside(self.c_lo, self.c_hi)


def compatible(s_a: np.ndarray, mu16_a: np.ndarray, g_a: np.ndarray, g_b: np.ndarray, mu16_b: np.ndarray) -> Interval:
    """The fine symbols the layer below allows, all (n,) int64. A fine bin meets `wide` exactly
    when (16 s + mu16_b + 8) G_a > e_lo and (16 s + mu16_b - 8) G_a < e_hi (lo <= hi always: the
    fine bins tile the line). Where G_a or G_b is 0 (a channel a quality drops) the element is
    free: lo .. hi = -Y_CLIP .. Y_CLIP and an unbounded interval, so it is coded as a full row."""
    p = 16 * s_a + mu16_a
    c_lo, c_hi = (p - 8) * g_b, (p + 8) * g_b
    e_lo, e_hi = c_lo - WIDEN * (s_a <= 0) * g_b, c_hi + WIDEN * (s_a >= 0) * g_b
    d = 16 * np.maximum(g_a, 1)
    lo = np.floor_divide(e_lo - (mu16_b + 8) * g_a, d) + 1
    hi = np.maximum(-np.floor_divide(-(e_hi - (mu16_b - 8) * g_a), d) - 1, lo)
    free = (g_a == 0) | (g_b == 0)      # a zero gain: the base says nothing (or the fine symbol is fixed)
    lo, hi = np.where(free, -spec.Y_CLIP, lo), np.where(free, spec.Y_CLIP, hi)
    c_lo, e_lo = (np.where(free, -UNBOUNDED, v) for v in (c_lo, e_lo))
    c_hi, e_hi = (np.where(free, UNBOUNDED, v) for v in (c_hi, e_hi))
    return Interval(lo, hi, e_lo, e_hi, c_lo, c_hi, (mu16_b - 8) * g_a, g_a)


def _rows(iv: Interval, t, tables: entropy.TableSet):
    """-> (full (n,) bool, first table entry a, entries n_in, escape allowed, width class K), each (n,).
    Full: the core holds every bin of the table and the escape is allowed (plain table coding)."""
    off, size = tables.offsets[t], tables.sizes[t]
    a = np.clip(iv.lo - off, 0, size)
    n_in = np.maximum(np.clip(iv.hi - off, -1, size - 1) - a + 1, 0)
    esc = (iv.lo < off) | (iv.hi >= off + size)
    full = esc & (16 * off * iv.g_a + iv.b0 >= iv.c_lo) & (16 * (off + size) * iv.g_a + iv.b0 <= iv.c_hi)
    k = _CLASSES[np.searchsorted(_CLASSES, n_in + esc)]     # integers only: both sides must agree
    return full, a, n_in, esc, k


def _probs(iv: Interval, t, a, n_in, esc, k: int, tables: entropy.TableSet) -> np.ndarray:
    """(n,) rows of one width class -> (n, k) float64 integer weights: the table's entries a .. a+n_in-1,
    each times Interval.weight of its bin, then the escape count times CORE whole bins where the
    escape is allowed, zeros after. Exact in float64 (counts <= 2^16 times weights <= 64 G_a)."""
    j = np.arange(k)[None]
    col = np.minimum(a[:, None] + j, tables.counts.shape[1] - 1)
    p = np.where(j < n_in[:, None], tables.counts[t[:, None], col] * iv.weight(tables.offsets[t][:, None] + col), 0)
    escape = tables.counts[t, tables.sizes[t]] * CORE * 16 * iv.g_a
    return np.where(esc[:, None] & (j == n_in[:, None]), escape[:, None], p).astype(np.float64)


def _raw(values: np.ndarray) -> np.ndarray:
    raw = (np.clip(values, -entropy._ESC_BIAS, entropy._ESC_BIAS - 1) + entropy._ESC_BIAS).astype(np.int32)
    return np.stack([raw >> 8, raw & 255], axis=1).reshape(-1)


def encode_unit(encoder, s, iv: Interval, t, tables: entropy.TableSet) -> None:
    """Append one coding unit's symbols s (n,), each in iv.lo .. iv.hi, with scale indices t (n,)."""
    full, a, n_in, esc, k = _rows(iv, t, tables)
    entropy.encode_groups(encoder, s[full], t[full], tables)
    rel = s - tables.offsets[t] - a
    for width in np.unique(k[~full]):
        sel = ~full & (k == width)
        inside = (rel[sel] >= 0) & (rel[sel] < n_in[sel])
        encoder.encode(np.where(inside, rel[sel], n_in[sel]).astype(np.int32), _ROWS,
                       _probs(iv[sel], t[sel], a[sel], n_in[sel], esc[sel], int(width), tables))
        if not inside.all():
            encoder.encode(_raw(s[sel][~inside]), entropy._BYTE)


def decode_unit(decoder, iv: Interval, t, tables: entropy.TableSet) -> np.ndarray:
    """Inverse of encode_unit -> s (n,) int64."""
    full, a, n_in, esc, k = _rows(iv, t, tables)
    lo, hi = iv.lo, iv.hi
    s = np.empty(lo.shape, np.int64)
    s[full] = entropy.decode_groups(decoder, t[full], tables)
    for width in np.unique(k[~full]):
        sel = ~full & (k == width)
        rel = np.asarray(decoder.decode(_ROWS, _probs(iv[sel], t[sel], a[sel], n_in[sel], esc[sel], int(width), tables)),
                         dtype=np.int64)
        v = rel + a[sel] + tables.offsets[t[sel]]
        escaped = rel == n_in[sel]
        if escaped.any():
            raw = np.asarray(decoder.decode(entropy._BYTE, 2 * int(escaped.sum())), dtype=np.int64).reshape(-1, 2)
            v[escaped] = raw[:, 0] * 256 + raw[:, 1] - entropy._ESC_BIAS
        if (v < lo[sel]).any() or (v > hi[sel]).any():
            raise ValueError("refined symbol outside the interval its base allows")
        s[sel] = v
    return s


def encode_tile(model, z_hat, y_g, below, g_a, g_b, floors=None, rdo: float = 0.0, spatial=None):
    """Rover: one tile's refinement. z_hat (Z,h,w) int at quality b, y_g (M,4h,4w) the latent gained
    at b, below = (s_a, mu16_a) (M,4h,4w) int64 of the layer below, g_a / g_b (M,) int gains
    -> (words (n,) uint32, mu16, idx, symbols (M,4h,4w) int64). Symbols as the one-shot rover
    chooses them (rounding, then the rate-distortion step towards zero where it stays allowed),
    clipped into lo .. hi."""
    enc = constriction.stream.queue.RangeEncoder()
    channel = np.broadcast_to(np.arange(z_hat.shape[0])[:, None, None], z_hat.shape)
    entropy.encode_groups(enc, z_hat, channel, model.z_tables)
    bounds = _bounds(below, g_a, g_b)
    tables = model.y_tables

    def code(sel, mu16, idx):
        iv = bounds(sel, mu16)
        lo, hi = iv.lo, iv.hi
        s = np.clip(entropy.symbols_for(y_g[sel], mu16), lo, hi)
        if rdo > 0:
            r = y_g[sel].astype(np.float64) - mu16 / 2 ** spec.MEAN_FRAC_BITS
            alt = s - np.sign(s)
            cost = lambda v: (r - v) ** 2 + rdo * entropy.symbol_bits(v, idx, tables)
            s = np.where((s != 0) & (alt >= lo) & (alt <= hi) & (cost(alt) < cost(s)), alt, s)
        encode_unit(enc, s, iv, idx, tables)
        return s
    mu16, idx, symbols, _ = latent._slices(model.net, intnet.trunk(model.net, z_hat), spec.ref_input(None, g_b),
                                           y_g.shape[0], code, floors, spatial)
    return enc.get_compressed().astype(np.uint32), mu16, idx, symbols


def decode_tile(model, words, index: int, shape, below, g_a, g_b, floors=None, spatial=None):
    """Ground (and the rover re-reading a chain): tile `index`'s refinement words, its padded shape
    (ph, pw) and the layer below (as encode_tile) -> (z_hat, mu16, idx, symbols). TileError on
    damage."""
    dec = entropy.TileDecoder(words, index)
    z_hat = latent.decode_z(dec, model, shape, index)
    bounds = _bounds(below, g_a, g_b)

    def code(sel, mu16, idx):
        return dec._guard(decode_unit, dec._dec, bounds(sel, mu16), idx, model.y_tables)
    mu16, idx, symbols, _ = latent._slices(model.net, intnet.trunk(model.net, z_hat), spec.ref_input(None, g_b),
                                           model.m, code, floors, spatial)
    return z_hat, mu16, idx, symbols


def _bounds(below, g_a, g_b):
    """-> bounds(sel, mu16_b) = the Interval of the unit `sel` ((M,4h,4w) bool)."""
    s_a, mu16_a = below
    ga = np.broadcast_to(np.asarray(g_a, np.int64)[:, None, None], s_a.shape)
    gb = np.broadcast_to(np.asarray(g_b, np.int64)[:, None, None], s_a.shape)
    return lambda sel, mu16: compatible(s_a[sel], mu16_a[sel], ga[sel], gb[sel], mu16)
