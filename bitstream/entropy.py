"""Range coding of quantized latents with fixed integer tables (constriction, queue coder).

A `TableSet` is a family of discrete distributions, one per table index:

    counts  (T, n_max) int   counts[t, :size[t]] for symbols offset[t] .. offset[t]+size[t]-1,
                             counts[t, size[t]] for the escape symbol; each row sums to 2**16
    offsets (T,) int, sizes (T,) int

Symbols are coded grouped by table index, ascending, each group in raster order; escaped values
follow their group as two Uniform(256) symbols (see docs/FORMAT.md, TILE).
"""
from dataclasses import dataclass, field

import constriction
import numpy as np

from remac.bitstream import spec
from remac.bitstream.errors import TileError

_ESC_BIAS = 32768
_BYTE = constriction.stream.model.Uniform(256)


@dataclass
class TableSet:
    counts: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    _models: dict = field(default_factory=dict, repr=False)
    _bits: np.ndarray = field(default=None, repr=False)

    @property
    def bits(self) -> np.ndarray:
        """(T, n_max) float64: PROB_BITS - log2(counts), each symbol's cost in bits (cached; an
        estimate for the encoder's choices, never fed to the coder)."""
        if self._bits is None:
            self._bits = spec.PROB_BITS - np.log2(np.maximum(self.counts, 1))
        return self._bits

    def model(self, t: int):
        """constriction Categorical for table t (cached; built from exact integer counts)."""
        if t not in self._models:
            probs = self.counts[t, :self.sizes[t] + 1].astype(np.float64)
            self._models[t] = constriction.stream.model.Categorical(probs, perfect=False)
        return self._models[t]


def _groups(table_index: np.ndarray):
    """table_index (n,) int in 0..2**16-1 -> (order (n,): positions grouped by table, ascending,
    raster order within each, [(table, start, stop)]: each group's span in `order`). A stable
    radix sort of the 16-bit indices: one O(n) pass instead of a mask per table."""
    if table_index.size and not 0 <= table_index.min() <= table_index.max() < 2 ** 16:
        raise ValueError("table indices out of range 0..65535")
    order = np.argsort(table_index.astype(np.uint16), kind="stable")
    grouped = table_index[order]
    starts = np.flatnonzero(np.concatenate([[True], grouped[1:] != grouped[:-1]])) if grouped.size else order[:0]
    stops = np.append(starts[1:], len(order))
    return order, list(zip(grouped[starts].tolist(), starts.tolist(), stops.tolist()))


def encode_groups(encoder, values: np.ndarray, table_index: np.ndarray, tables: TableSet) -> None:
    """values, table_index: same shape, int. Appends all values to `encoder`, grouped (_groups)."""
    t = table_index.reshape(-1)
    order, groups = _groups(t)
    v = values.reshape(-1)
    rel, size = v - tables.offsets[t], tables.sizes[t]      # in raster order, then put in coding order
    esc = (rel < 0) | (rel >= size)
    symbols = np.where(esc, size, rel).astype(np.int32)[order]
    escaped = np.flatnonzero(esc[order])                    # positions (in coding order) of escapes
    with_escapes = set(np.searchsorted([a for _, a, _ in groups], escaped, side="right").tolist())
    for g, (table, a, b) in enumerate(groups, 1):
        encoder.encode(symbols[a:b], tables.model(table))
        if g in with_escapes:
            at = escaped[(escaped >= a) & (escaped < b)]
            raw = (np.clip(v[order[at]], -_ESC_BIAS, _ESC_BIAS - 1) + _ESC_BIAS).astype(np.int32)
            encoder.encode(np.stack([raw >> 8, raw & 255], axis=1).reshape(-1), _BYTE)


def decode_groups(decoder, table_index: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of encode_groups: returns int64 values shaped like table_index."""
    order, groups = _groups(table_index.reshape(-1))
    out = np.empty(order.shape, dtype=np.int64)
    for table, a, b in groups:
        rel = np.asarray(decoder.decode(tables.model(table), b - a), dtype=np.int64)
        v = rel + tables.offsets[table]
        esc = rel == tables.sizes[table]
        if esc.any():
            raw = np.asarray(decoder.decode(_BYTE, 2 * int(esc.sum())), dtype=np.int64).reshape(-1, 2)
            v[esc] = raw[:, 0] * 256 + raw[:, 1] - _ESC_BIAS
        out[order[a:b]] = v
    return out.reshape(table_index.shape)


def quantize_pmf(pmf: np.ndarray, tail: float) -> np.ndarray:
    """Float pmf (n,) + escape mass -> integer counts (n+1,) summing to 2**PROB_BITS, each >= 1.

    Used once at export; the resulting integers are what both sides code with.
    """
    total = 2 ** spec.PROB_BITS
    p = np.append(np.maximum(pmf, 0), max(tail, 0))
    p = p / p.sum()
    counts = np.maximum(1, np.floor(p * (total - len(p))).astype(np.int64))
    counts[np.argmax(counts)] += total - counts.sum()
    assert counts.min() >= 1 and counts.sum() == total
    return counts


def symbols_for(y_g: np.ndarray, mu16: np.ndarray) -> np.ndarray:
    """Rover: s = clip(round(y_g - mu), +-Y_CLIP) with mu = mu16 / 16. (M,h,w) float -> int64."""
    return _rounded(_residual(y_g, mu16))


def _residual(y_g: np.ndarray, mu16: np.ndarray) -> np.ndarray:
    """y_g - mu16 / 16 in float64, the value symbols_for rounds (and rdo_symbols weighs)."""
    return y_g.astype(np.float64) - mu16 / 2 ** spec.MEAN_FRAC_BITS


def _rounded(d: np.ndarray) -> np.ndarray:
    s = np.floor(d + 0.5)
    return np.clip(s, -spec.Y_CLIP, spec.Y_CLIP).astype(np.int64)


def symbol_bits(values: np.ndarray, table_index: np.ndarray, tables: TableSet) -> np.ndarray:
    """Bits the coder spends on each value with its table (escapes: the escape symbol + 16 raw
    bits), same shape as values; a float estimate, never fed to the coder."""
    rel = values - tables.offsets[table_index]
    size = tables.sizes[table_index]
    esc = (rel < 0) | (rel >= size)
    return tables.bits[table_index, np.where(esc, size, rel)] + 16.0 * esc


def rdo_symbols(y_g: np.ndarray, mu16: np.ndarray, idx: np.ndarray, tables: TableSet, lam: float) -> np.ndarray:
    """Rover: symbols_for, then each non-zero symbol moves one step towards zero where that
    lowers (y_g - mu - s)^2 + lam * bits(s) (symbol_bits with its scale index's table; lam a number
    or broadcastable, e.g. (M,1,1) per channel). Only the
    encoder chooses symbols, so this needs nothing from the format or the ground. (M,h,w) -> int64.
    Costs are computed at the non-zero symbols only (most are zero), element by element as over
    the whole array: the same float64 operations as symbol_bits, with each position's table row
    (offset, size, bits) looked up once for both candidates."""
    d = _residual(y_g, mu16)
    s = _rounded(d)
    if np.all(np.asarray(lam) <= 0):
        return s
    flat = s.reshape(-1)                    # s is a new C-contiguous array: a view
    nz = np.flatnonzero(flat)
    v = flat[nz]
    r = d.reshape(-1)[nz]
    lam_nz = lam if np.ndim(lam) == 0 else np.broadcast_to(lam, s.shape)[s != 0]
    t = np.ascontiguousarray(idx).reshape(-1)[nz]
    offset, size = tables.offsets[t], tables.sizes[t]
    row = t * tables.bits.shape[1]
    bits = tables.bits.reshape(-1)

    def cost(u):
        rel = u - offset
        esc = (rel < 0) | (rel >= size)
        return (r - u) ** 2 + lam_nz * (bits[row + np.where(esc, size, rel)] + 16.0 * esc)
    alt = v - np.sign(v)
    flat[nz] = np.where(cost(alt) < cost(v), alt, v)
    return s


def dequantize(symbols: np.ndarray, mu16: np.ndarray) -> np.ndarray:
    """Both sides: y_hat_g = s + mu16 / 16, (M,h,w) float32 (exact: small integers and 1/16ths)."""
    return (symbols + mu16 / 2 ** spec.MEAN_FRAC_BITS).astype(np.float32)


def encode_tile(z_hat, symbols, idx, z_tables: TableSet, y_tables: TableSet, units=None) -> np.ndarray:
    """z_hat (Z,h,w) int, symbols/idx (M,4h,4w) int -> range-coder words (n,) uint32: z by channel,
    then y one coding unit after another (units: (M,4h,4w) bool selections in coding order, as
    bitstream.latent makes them; default one unit of all of y), each grouped by scale index."""
    enc = constriction.stream.queue.RangeEncoder()
    channel = np.broadcast_to(np.arange(z_hat.shape[0])[:, None, None], z_hat.shape)
    encode_groups(enc, z_hat, channel, z_tables)
    for sel in units if units is not None else [np.ones(symbols.shape, bool)]:
        encode_groups(enc, symbols[sel], idx[sel], y_tables)
    return enc.get_compressed().astype(np.uint32)


class TileDecoder:
    """Two-phase decode of one tile's words: z first, then y once its tables are known."""

    def __init__(self, words: np.ndarray, tile_index: int):
        self.tile_index = tile_index
        self._dec = constriction.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except BaseException as exc:    # includes pyo3's PanicException from constriction on garbage
            raise TileError(self.tile_index, f"tile {self.tile_index}: entropy decoding failed "
                                             f"({type(exc).__name__}: {exc})") from None

    def z(self, shape, z_tables: TableSet) -> np.ndarray:
        channel = np.broadcast_to(np.arange(shape[0])[:, None, None], shape)
        return self._guard(decode_groups, self._dec, channel, z_tables)

    def y(self, idx: np.ndarray, y_tables: TableSet) -> np.ndarray:
        return self._guard(decode_groups, self._dec, idx, y_tables)
