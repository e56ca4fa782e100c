"""Refinement layers: the same latent quantized again at a finer quality, coded only inside the
interval that the layers below already fixed (nested quantization; docs/FORMAT.md, "Refinement").

A layer below (the base, quality a) left, per latent element, its symbol s_a and mean mu16_a:
P_a = 16 s_a + mu16_a is 16 y g_a rounded, in integers. The refinement at quality b codes the
tile exactly as a one-shot stream at b would (z_b, then mu16_b / idx_b from the integer network,
channel and spatial context from the refined symbols), except that each symbol s_b is coded with
its table restricted to the symbols whose bins meet the base's interval, renormalised:

    16 y g_a  in  [P_a - 8 - W [s_a <= 0],  P_a + 8 + W [s_a >= 0])       the base bin, widened by
                                                                          W = 8 (half a step) away
                                                                          from zero
    16 y g_b  =  that interval * G_b / G_a                                (G: integer gains)
    s_b in lo .. hi: the fine bins [16 s_b + mu16_b - 8, 16 s_b + mu16_b + 8) that meet it

The widening covers the rover's rate-distortion choice (entropy.rdo_symbols): it moves a symbol
one step towards zero only where 2 d < lambda * (bits saved), d the distance of y g_a - mu_a past
the bin edge, and with lambda = 0.05 (encode.RDO_LAMBDA) and at most 16 bits saved within a table,
d < 0.4 of a step. So the one-shot stream's symbol at b is inside lo .. hi (measured: every one
of them on five images) and base + layer reconstruct what the one-shot stream at b does. Widening
by a whole step instead cost 0.4-0.5 % more (q20 -> q75); an encoder that moves symbols further
only loses quality (its symbols are clipped into lo .. hi), never decodability. Everything
above is integer arithmetic on values both sides hold (base symbols and means, gains, mu16_b).

Coding a unit (the same coding units, in the same order, as bitstream.latent):

    every symbol: a = lo - offset, b = hi - offset clipped to the table 0 .. size-1; escape
    allowed where lo .. hi leaves the table
    full rows (a = 0, b = size-1, escape allowed): the table itself, grouped by scale index as in
        a one-shot stream (entropy.encode_groups, escapes after each group)
    restricted rows, grouped by width class K = 8, 16, 32, ... (the smallest power of two, at
        least 8, holding n = b - a + 1 entries plus the escape), each class in raster order:
        Categorical over counts[idx, a .. b] (+ the escape count), zero-padded to K; then the
        class's escaped values, two Uniform(256) each (value + 32768, high byte first)
"""
import hashlib

import constriction
import numpy as np

from bitstream import entropy, latent, spec

_ROWS = constriction.stream.model.Categorical(perfect=False)     # probabilities given per row
MIN_CLASS = 8
_CLASSES = MIN_CLASS << np.arange(16, dtype=np.int64)      # 8, 16, ..., 2^18: wider than any table
WIDEN = 8           # 1/16 of a base step added to the base bin on each side away from zero (module doc)


def stream_id(data: bytes) -> bytes:
    """The ID a refinement names its layer below by: the first 8 bytes of SHA-256 of that whole
    stream's bytes (a refinement's own bytes name its base in turn, so one ID pins the chain)."""
    return hashlib.sha256(bytes(data)).digest()[:8]


def compatible(s_a: np.ndarray, mu16_a: np.ndarray, g_a: np.ndarray, g_b: np.ndarray, mu16_b: np.ndarray):
    """The fine symbols allowed by the layer below, all (n,) int64 -> (lo, hi) (n,) int64, lo <= hi.

    A fine bin [16 s + mu16_b - 8, 16 s + mu16_b + 8) meets the scaled interval [L, U) G_b/G_a
    (module doc) exactly when (16 s + mu16_b + 8) G_a > L G_b and (16 s + mu16_b - 8) G_a < U G_b."""
    p = 16 * s_a + mu16_a
    low = (p - 8 - WIDEN * (s_a <= 0)) * g_b - (mu16_b + 8) * g_a
    high = (p + 8 + WIDEN * (s_a >= 0)) * g_b - (mu16_b - 8) * g_a
    d = 16 * g_a
    lo = np.floor_divide(low, d) + 1
    hi = -np.floor_divide(-high, d) - 1
    return lo, np.maximum(hi, lo)


def _rows(lo, hi, t, tables: entropy.TableSet):
    """-> (full (n,) bool, first table entry a, entries n_in, escape allowed, width class K), each (n,)."""
    off, size = tables.offsets[t], tables.sizes[t]
    a = np.clip(lo - off, 0, size)
    n_in = np.maximum(np.clip(hi - off, -1, size - 1) - a + 1, 0)
    esc = (lo < off) | (hi >= off + size)
    full = (a == 0) & (n_in == size) & esc
    k = _CLASSES[np.searchsorted(_CLASSES, n_in + esc)]     # integers only: both sides must agree
    return full, a, n_in, esc, k


def _probs(t, a, n_in, esc, k: int, tables: entropy.TableSet) -> np.ndarray:
    """(n,) rows of one width class -> (n, k) float64 integer counts: the table's entries a .. a+n_in-1,
    then its escape count where allowed, zeros after."""
    j = np.arange(k)[None]
    col = np.minimum(a[:, None] + j, tables.counts.shape[1] - 1)
    p = np.where(j < n_in[:, None], tables.counts[t[:, None], col], 0)
    p = np.where(esc[:, None] & (j == n_in[:, None]), tables.counts[t, tables.sizes[t]][:, None], p)
    return p.astype(np.float64)


def _raw(values: np.ndarray) -> np.ndarray:
    raw = (np.clip(values, -entropy._ESC_BIAS, entropy._ESC_BIAS - 1) + entropy._ESC_BIAS).astype(np.int32)
    return np.stack([raw >> 8, raw & 255], axis=1).reshape(-1)


def encode_unit(encoder, s, lo, hi, t, tables: entropy.TableSet) -> None:
    """Append one coding unit's symbols s (n,), each in lo .. hi, with scale indices t (n,)."""
    full, a, n_in, esc, k = _rows(lo, hi, t, tables)
    entropy.encode_groups(encoder, s[full], t[full], tables)
    rel = s - tables.offsets[t] - a
    for width in np.unique(k[~full]):
        sel = ~full & (k == width)
        inside = (rel[sel] >= 0) & (rel[sel] < n_in[sel])
        encoder.encode(np.where(inside, rel[sel], n_in[sel]).astype(np.int32), _ROWS,
                       _probs(t[sel], a[sel], n_in[sel], esc[sel], int(width), tables))
        if not inside.all():
            encoder.encode(_raw(s[sel][~inside]), entropy._BYTE)


def decode_unit(decoder, lo, hi, t, tables: entropy.TableSet) -> np.ndarray:
    """Inverse of encode_unit -> s (n,) int64."""
    full, a, n_in, esc, k = _rows(lo, hi, t, tables)
    s = np.empty(lo.shape, np.int64)
    s[full] = entropy.decode_groups(decoder, t[full], tables)
    for width in np.unique(k[~full]):
        sel = ~full & (k == width)
        rel = np.asarray(decoder.decode(_ROWS, _probs(t[sel], a[sel], n_in[sel], esc[sel], int(width), tables)),
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
        lo, hi = bounds(sel, mu16)
        s = np.clip(entropy.symbols_for(y_g[sel], mu16), lo, hi)
        if rdo > 0:
            r = y_g[sel].astype(np.float64) - mu16 / 2 ** spec.MEAN_FRAC_BITS
            alt = s - np.sign(s)
            cost = lambda v: (r - v) ** 2 + rdo * entropy.symbol_bits(v, idx, tables)
            s = np.where((s != 0) & (alt >= lo) & (alt <= hi) & (cost(alt) < cost(s)), alt, s)
        encode_unit(enc, s, lo, hi, idx, tables)
        return s
    mu16, idx, symbols, _ = latent._slices(model.net, z_hat, spec.ref_input(None, g_b), y_g.shape[0], code,
                                           floors, spatial)
    return enc.get_compressed().astype(np.uint32), mu16, idx, symbols


def decode_tile(model, words, index: int, shape, below, g_a, g_b, floors=None, spatial=None):
    """Ground (and the rover re-reading a chain): tile `index`'s refinement words, its padded shape
    (ph, pw) and the layer below (as encode_tile) -> (z_hat, mu16, idx, symbols). TileError on
    damage."""
    dec = entropy.TileDecoder(words, index)
    z_hat = latent.decode_z(dec, model, shape, index)
    bounds = _bounds(below, g_a, g_b)

    def code(sel, mu16, idx):
        return dec._guard(decode_unit, dec._dec, *bounds(sel, mu16), idx, model.y_tables)
    mu16, idx, symbols, _ = latent._slices(model.net, z_hat, spec.ref_input(None, g_b), model.m, code, floors, spatial)
    return z_hat, mu16, idx, symbols


def _bounds(below, g_a, g_b):
    """-> bounds(sel, mu16_b) = (lo, hi) of the unit `sel` ((M,4h,4w) bool)."""
    s_a, mu16_a = below
    ga = np.broadcast_to(np.asarray(g_a, np.int64)[:, None, None], s_a.shape)
    gb = np.broadcast_to(np.asarray(g_b, np.int64)[:, None, None], s_a.shape)
    return lambda sel, mu16: compatible(s_a[sel], mu16_a[sel], ga[sel], gb[sel], mu16)
