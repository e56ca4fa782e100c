"""Regenerate the golden test vector (after re-exporting models): python scripts/make_golden.py

tests/data/golden_grey.rmc   a small stream made by the shipped grey model and default library
tests/data/golden.json       its model ID and SHA-256s of what the ground must entropy-decode from it
The test (tests/test_golden.py) catches drift of the format, the tables, the integer network or
the range coder, which rover-vs-ground tests run in one process cannot see.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from bitstream import library
from ground_decoder.decode import entropy_decode
from rover_encoder.encode import encode
from rover_encoder.imageio import load_image

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


def main():
    lib = library.load()
    img = load_image(DATA / "navcam_gray.png")
    img.pixels = img.pixels[:, :96, :128]
    data = encode(img, 60, lib, tile=64).data
    (DATA / "golden_grey.rmc").write_bytes(data)
    parsed, model, _, tiles, lost, problems = entropy_decode(data, lib)
    assert not lost and not problems
    meta = {"model_id": model.model_id.hex(), "library_id": lib.library_id, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "latents": latent_digests(tiles)}
    (DATA / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
