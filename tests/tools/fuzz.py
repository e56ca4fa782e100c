"""Stream fuzzing: damage real .rmc streams and check the decoder's contract.

Contract: decode() either returns an image of the header's size (damaged tiles concealed and
listed) or raises a RemacError subclass with a message. Anything else is a bug.

    python -m tests.tools.fuzz --seconds 60        # random damage for a minute
"""
import argparse
import random
import time

import numpy as np

from remac.bitstream.errors import RemacError
from remac.ground_decoder.decode import decode
from remac.rover_encoder.options import EncodeOptions


def damage(data: bytes, rng: random.Random) -> bytes:
    """One random corruption: truncation, bit flips, a random byte run, or shuffled segments."""
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(b[:rng.randrange(len(b))])
    if kind == 1:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 2:
        i = rng.randrange(len(b))
        n = rng.randint(1, 64)
        b[i:i + n] = bytes(rng.randrange(256) for _ in range(n))
        return bytes(b)
    return shuffle_segments(data, rng)


def shuffle_segments(data: bytes, rng: random.Random) -> bytes:
    import struct
    pos, segs = 8, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        segs.append(data[pos:pos + 12 + length])
        pos += 12 + length
    rng.shuffle(segs)
    return data[:8] + b"".join(segs)


def check(data: bytes, library, expected_shape) -> str:
    """-> 'ok' | 'concealed' | 'refused'; raises AssertionError on a contract breach."""
    try:
        out = decode(data, library)
    except RemacError as exc:
        assert str(exc), "empty error message"
        return "refused"
    assert out.image.shape == expected_shape, (out.image.shape, expected_shape)
    return "concealed" if out.lost_tiles or out.warnings else "ok"


def main(argv=None):
    from pathlib import Path
    from remac.rover_encoder.encode import encode
    from remac.rover_encoder.imageio import load_image
    from remac.bitstream.library import load
    data = Path(__file__).resolve().parent.parent / "tests" / "data"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", default=[data / "navcam_gray.png", data / "mastcam_rgb.png"],
                    help="images to make the streams from [default: the test images]")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    library, rng = load(), random.Random(args.seed)
    streams = []
    for path in args.images:
        img = load_image(path)
        img.pixels = img.pixels[:, :96, :160]
        r = encode(img, EncodeOptions(5000, library=library, tile=64))
        streams.append((r.data, np.asarray(decode(r.data, library).image).shape))
    counts, start = {}, time.time()
    while time.time() - start < args.seconds:
        data, shape = rng.choice(streams)
        outcome = check(damage(data, rng), library, shape)
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"{sum(counts.values())} damaged streams in {args.seconds:.0f} s: {counts}; no contract breach")


if __name__ == "__main__":
    main()
