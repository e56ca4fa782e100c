"""Fixed numeric conventions of the bit-exact entropy path (format v1).

Everything here is part of the bitstream contract: the rover and the ground must agree on
every constant, and the training code imports them so that what is trained is what is coded.

Fixed-point conventions (all integers, see docs/FORMAT.md, "What is integer"):

    hidden activation      uint8 in [0, 255], real value = a / 16        (ACT_SCALE)
    quantized hyper-latent z_hat in [-Z_CLIP, Z_CLIP], real value = z_hat  (scale 1)
    reference statistics   int, real value = s / 16 (stored in the library, ungained)
    gained ref statistics  int in [-REF_CLIP, REF_CLIP], real value = r / 4
    channel gain           int G, real gain = G / 2**GAIN_FRAC_BITS
    entropy mean           int mu16, real mean = mu16 / 16
    entropy scale          int index i into SCALE_TABLE (log-spaced)
"""
import numpy as np

ACT_MAX = 255
ACT_SCALE = 1.0 / 16
Z_CLIP = 255
REF_SCALE = 1.0 / 4
REF_CLIP = 4095
GAIN_FRAC_BITS = 12
MEAN_FRAC_BITS = 4
MEAN_CLIP = 2**15 - 1
Y_CLIP = 2**15 - 1
REQUANT_SHIFT = 24          # out = (acc * M + 2**(S-1)) >> S
WEIGHT_MAX = 127

SCALE_LEVELS = 64
SCALE_MIN = 0.11
SCALE_MAX = 64.0
PROB_BITS = 16              # integer PMF tables sum to 2**PROB_BITS
QUALITY_LEVELS = 101        # quality 0..100: rows of a model's integer gain table
QUALITY_STEPS = 100         # quality is coded in 1/100 (format 2.0; 1.0 streams carry whole numbers)
CTX_SHIFT = 4               # channel context input: min(|16 * y_hat_g| >> CTX_SHIFT, ACT_MAX) = |y_hat_g|, capped


def scale_table() -> np.ndarray:
    """(SCALE_LEVELS,) float64 Gaussian std per scale index, log-spaced."""
    return np.exp(np.linspace(np.log(SCALE_MIN), np.log(SCALE_MAX), SCALE_LEVELS))


def quality_steps(quality) -> int:
    """Quality 0..100 (fractional allowed) -> whole hundredths, rounded to the nearest."""
    q100 = int(round(float(quality) * QUALITY_STEPS))
    if not 0 <= q100 <= 100 * QUALITY_STEPS:
        raise ValueError(f"quality {quality} is out of range 0..100")
    return q100


def gain_int_at(gain_table: np.ndarray, q100: int) -> np.ndarray:
    """(QUALITY_LEVELS, M) integer gain table, quality in 1/100 -> (M,) int64 gains, exactly.

    Whole qualities read their row; in between, the two neighbouring rows are interpolated
    linearly in integers, rounding half up: (g[q] * (100 - f) + g[q+1] * f + 50) // 100
    (gains are positive, so floor division is unambiguous in any language)."""
    lo, f = divmod(int(q100), QUALITY_STEPS)
    row = gain_table[lo].astype(np.int64)
    if f == 0:
        return row
    return (row * (QUALITY_STEPS - f) + gain_table[lo + 1].astype(np.int64) * f + QUALITY_STEPS // 2) \
        // QUALITY_STEPS


def gain_ref_stats(stats16: np.ndarray, gain_int: np.ndarray) -> np.ndarray:
    """Gain the stored reference statistics, exactly, in integers.

    stats16: (2, M) int (mean, mean-abs-deviation of the ungained reference latent, units 1/16)
    gain_int: (M,) int channel gains (units 2**-GAIN_FRAC_BITS)
    returns (2*M,) int64 in units of REF_SCALE (1/4), clipped to +-REF_CLIP.
    """
    prod = stats16.astype(np.int64) * gain_int.astype(np.int64)[None, :]
    shift = GAIN_FRAC_BITS + 2          # 1/16 * 2**-12  ->  1/4
    r = (prod + (1 << (shift - 1))) >> shift
    return np.clip(r, -REF_CLIP, REF_CLIP).reshape(-1)


def ref_input(stats16, gain_int: np.ndarray) -> np.ndarray:
    """(2,M) library stats (or None for no reference) + (M,) gains -> (2M+1,) int64 input of the
    integer network's reference branch: gained stats and a presence flag (1.0 in units 1/4)."""
    if stats16 is None:
        return np.zeros(2 * len(gain_int) + 1, dtype=np.int64)
    return np.append(gain_ref_stats(stats16, gain_int), int(1 / REF_SCALE))
