"""A committed stream must keep decoding to the same integers: guards the format, the CDF tables,
the integer network and constriction against drift (regenerate with scripts/make_golden.py only
together with new model artifacts)."""
import json
import sys
from pathlib import Path

from ground_decoder.decode import entropy_decode
from tests.conftest import DATA

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from make_golden import latent_digests  # noqa: E402


def test_golden_stream_decodes_to_the_recorded_integers(default_library):
    meta = json.loads((DATA / "golden.json").read_text())
    data = (DATA / "golden_grey.rmc").read_bytes()
    parsed, model, _, tiles, lost, problems = entropy_decode(data, default_library)
    assert model.model_id.hex() == meta["model_id"] and default_library.library_id == meta["library_id"]
    assert not lost and not problems
    assert latent_digests(tiles) == meta["latents"]
