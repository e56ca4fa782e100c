"""The installed code is one namespace, remac.*, and the runtime never imports the tooling: nothing
named bitstream, models, ... is importable from outside the repository, and no runtime module names
training, evaluation, scripts or tests."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("bitstream", "rover_encoder", "ground_decoder", "models")


@pytest.mark.parametrize("name", [*RUNTIME, "evaluation", "training"])
def test_no_generic_top_level_name_is_installed(tmp_path, name):
    r = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr


def test_the_runtime_imports_as_remac(tmp_path):
    code = "import remac.bitstream, remac.rover_encoder.cli, remac.ground_decoder, remac.models"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


def test_the_runtime_never_imports_tooling_or_a_bare_name():
    bad = re.compile(r"^\s*(from|import)\s+(training|evaluation|scripts|tests|bitstream|rover_encoder|ground_decoder|models)\b",
                     re.M)
    for package in RUNTIME:
        for path in (ROOT / package).rglob("*.py"):
            assert not bad.search(path.read_text()), path.relative_to(ROOT)
