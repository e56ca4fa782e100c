"""After re-exporting models: golden streams of the shipped grey release and the test floors.
`python -m scripts.make_golden` (training.promote runs it).

tests/data/golden/grey_<model ID>.rmc   a small grey stream made by the shipped grey model and default library
tests/data/golden/grey_<model ID>.json  its model and library IDs and SHA-256s of what the ground must
                                        entropy-decode from it; earlier releases' files stay (they
                                        prove the model store keeps old streams decodable)
tests/data/golden/planes_<model ID>.*   the same for a small colour stream (format 3.0: Y, Cb, Cr planes)
tests/data/floors.json                  PSNR floors and rate ceilings of tests/test_roundtrip.py: the
                                        shipped models measured on the test images, less 1 dB, +30 % rate
The golden test (tests/test_golden.py) catches drift of the format, the tables, the integer network
or the range coder, which rover-vs-ground tests run in one process cannot see.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from remac.bitstream import library
from evaluation import metrics
from remac.ground_decoder.decode import entropy_decode
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import load_image
from remac.rover_encoder.options import EncodeOptions
from remac.bitstream.spec import quality_steps

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def latent_digests(tiles: dict) -> dict:
    parts = {"z_hat": 0, "mu16": 1, "idx": 2, "y_hat_g": 3}
    out = {}
    for name, k in parts.items():
        h = hashlib.sha256()
        for i in sorted(tiles):
            h.update(np.ascontiguousarray(tiles[i][k]).astype(np.float64 if k == 3 else np.int64).tobytes())
        out[name] = h.hexdigest()
    return out


FLOOR_POINTS = (("grey", "navcam_gray.png", 20), ("grey", "navcam_gray.png", 75),
                ("colour", "mastcam_rgb.png", 20), ("colour", "mastcam_rgb.png", 75))


def floors(lib) -> dict:
    """{"kind,quality": [min PSNR dB, max bpp]} from the shipped models on the test images."""
    from remac.ground_decoder.decode import decode
    out = {}
    for kind, name, quality in FLOOR_POINTS:
        img = load_image(DATA / name)
        result = encode(img, EncodeOptions(quality_steps(quality), library=lib))
        b = decode(result.data, lib).image
        psnr = metrics.psnr(np.round(img.pixels * 255), b.transpose(2, 0, 1) if b.ndim == 3 else b[None])
        out[f"{kind},{quality}"] = [round(psnr - 1.0, 1), round(result.bpp * 1.3, 3)]
        print(f"{kind} q{quality}: {result.bpp:.3f} bpp, {psnr:.2f} dB")
    return out


def golden(lib, image: str, prefix: str, model=None):
    """Write tests/data/golden/<prefix>_<model ID>.rmc/.json: a 96x128 crop of `image` at quality 60
    in 64-px tiles, coded with the references the rover chooses even where they do not pay (so the
    golden streams always cover the reference-conditioned entropy model; model: a model to force
    instead of the shipped choice)."""
    img = load_image(DATA / image)
    img.pixels = img.pixels[:, :96, :128]
    opts = EncodeOptions(6000, library=lib, tile=64, model=model, keep_refs=True)     # the reference path, always
    data = encode(img, opts).data
    parsed, model, _, tiles, lost, problems = entropy_decode(data, lib)
    assert not lost and not problems
    stem = DATA / "golden" / f"{prefix}_{model.model_id.hex()}"
    stem.parent.mkdir(exist_ok=True)
    stem.with_suffix(".rmc").write_bytes(data)
    meta = {"model_id": model.model_id.hex(), "library_id": lib.library_id, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "latents": latent_digests(tiles)}
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


def main():
    lib = library.load()
    golden(lib, "navcam_gray.png", "grey")
    golden(lib, "mastcam_rgb.png", "planes")
    (DATA / "floors.json").write_text(json.dumps(floors(lib), indent=1) + "\n")


if __name__ == "__main__":
    main()
