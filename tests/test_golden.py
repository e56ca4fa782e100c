"""Committed streams must keep decoding to the same integers: guards the format, the CDF tables,
the integer network and constriction against drift, and proves that every release stays
decodable after a newer one becomes the default (its entropy model, decoder and library metadata
live in the model store, models/store/). One golden stream per release:
tests/data/golden/<name>_<model ID>.rmc + .json, written by scripts/make_golden.py."""
import json

import pytest

from remac.bitstream import modelfile
from remac.ground_decoder.decode import decode, entropy_decode
from tests.conftest import DATA

from scripts.make_golden import latent_digests

GOLDEN = sorted((DATA / "golden").glob("*.json"))


@pytest.mark.parametrize("meta_path", GOLDEN, ids=lambda p: p.stem)
def test_golden_stream_decodes_to_the_recorded_integers(meta_path):
    meta = json.loads(meta_path.read_text())
    data = meta_path.with_suffix(".rmc").read_bytes()
    parsed, model, library, tiles, lost, problems = entropy_decode(data)    # default library, or a release's
    assert model.model_id.hex() == meta["model_id"] and library.library_id == meta["library_id"]
    assert not lost and not problems
    assert latent_digests(tiles) == meta["latents"]
    image = decode(data).image
    assert image.shape[:2] == (parsed.header.height, parsed.header.width)
    assert image.ndim == (3 if parsed.header.output_channels == 3 else 2)


def test_the_shipped_grey_model_has_golden_streams_of_grey_and_colour_planes():
    grey = modelfile.load('grey').model_id.hex()
    assert {f"grey_{grey}", f"planes_{grey}"} <= {p.stem for p in GOLDEN}
