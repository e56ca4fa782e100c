"""What a new user met first (issue 29, "New-user defects"), one test per defect: quality guidance,
a library that kept no reference, the model store's truth, library permissions, program names in
usage errors, early errors, --models, remac-lib build/info, thin images."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from remac.bitstream.errors import ModelError, RemacError
from remac.ground_decoder.cli import decode_main
from remac.rover_encoder.cli import encode_main, lib_main
from remac.rover_encoder.info import main as info_main
from tests.conftest import COLOUR, GOLDEN_GREY, GREY

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, args, prog):
    return CliRunner().invoke(cmd, [str(a) for a in args], prog_name=prog, catch_exceptions=False)


@pytest.fixture(scope="module")
def small_library(tmp_path_factory):
    """A 2-image library built from a directory (a grey image in a subfolder, a colour one, a text
    file that is skipped)."""
    base = tmp_path_factory.mktemp("lib")
    (base / "sols" / "sub").mkdir(parents=True)
    (base / "sols" / "sub" / "navcam.png").write_bytes(GREY.read_bytes())
    (base / "sols" / "mastcam.png").write_bytes(COLOUR.read_bytes())
    (base / "sols" / "notes.txt").write_text("not an image")
    return base / "lib", run(lib_main, ["build", base / "sols", "-o", base / "lib"], "remac-lib")


def test_1_encode_help_says_what_each_quality_gives():
    out = run(encode_main, ["--help"], "remac-encode").output
    assert "Choosing a quality" in out
    for row in ("Navcam grey 256x256   q20 0.045/30.9", "full Navcam frames    q20 0.105/27.6",
                "Mastcam colour        q20 0.093/25.6"):
        assert row in out


def test_2_a_library_that_kept_no_reference_says_so(small_library, tmp_path):
    lib, built = small_library
    assert "remac-lib: warning:" in built.stderr and "a library of 2 images is small" in built.stderr
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((128, 128), 120, np.uint8)).save(flat)
    r = run(encode_main, [flat, "--ref-lib", lib, "-o", tmp_path / "a.rmc", "--json"], "remac-encode")
    refs = json.loads(r.stdout)["refs"]
    assert r.exit_code == 0 and refs["entropy"] is None
    assert refs["note"].startswith("no reference kept: coding without one was smaller") and "holds only 2" in refs["note"]
    assert f"remac-encode: warning: {flat}: no reference kept" in r.stderr
    # the shipped library: the note in --json, no warning line on every file
    r = run(encode_main, [flat, "-o", tmp_path / "b.rmc", "--json"], "remac-encode")
    assert "note" in json.loads(r.stdout)["refs"] and "warning" not in r.stderr


def test_3_a_stream_of_a_pruned_release_names_the_command_that_restores_it():
    from remac.bitstream import modelfile
    with pytest.raises(ModelError, match=r"`bash scripts/restore_release.sh 0123456789abcdef` restores it into "
                                         r"models/store, or add a store that has it with --models DIR$"):
        modelfile.by_id(bytes.fromhex("0123456789abcdef"))
    help_text = " ".join(run(decode_main, ["--help"], "remac-decode").output.split())
    assert "every earlier release" not in help_text
    assert "the two releases before it decode as installed" in help_text
    assert "bash scripts/restore_release.sh MODEL_ID" in help_text


@pytest.mark.parametrize("umask,mode", [(0o022, 0o755), (0o027, 0o750)])
def test_4_the_library_folder_honours_the_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        assert run(lib_main, ["build", GREY, "-o", tmp_path / "lib"], "remac-lib").exit_code == 0
    finally:
        os.umask(old)
    assert ((tmp_path / "lib").stat().st_mode & 0o777) == mode


@pytest.mark.parametrize("cmd,prog,args", [(encode_main, "remac-encode", ["a.png", "-q"]),
                                           (decode_main, "remac-decode", ["a.rmc", "-o"]),
                                           (lib_main, "remac-lib", ["build", "a.png", "-o"]),
                                           (info_main, "remac-info", ["a.rmc", "--json", "-V", "--bogus"])])
def test_5_a_missing_option_value_names_the_command(cmd, prog, args):
    r = CliRunner().invoke(cmd, args, prog_name=prog)
    path = prog + (" build" if cmd is lib_main else "")
    assert r.exit_code == 2 and r.stderr.startswith(f"{path}: error: ") and r.stderr.endswith(f"(see {path} --help)\n")
    if cmd is not info_main:
        assert f"Option '{args[-1]}' requires an argument." in r.stderr


# A fresh interpreter: what was imported when the command gave up
_PROBE = ("import sys\n"
          "from remac.rover_encoder.cli import encode_main\n"
          "from remac.ground_decoder.cli import decode_main\n"
          "cmd = encode_main if sys.argv[1] == 'encode' else decode_main\n"
          "try:\n"
          "    cmd(sys.argv[2:], prog_name='remac-' + sys.argv[1])\n"
          "except SystemExit as exc:\n"
          "    print(exc.code, 'torch' in sys.modules, 'onnxruntime' in sys.modules)\n")


@pytest.mark.parametrize("which,args,line", [
    ("decode", ["{tmp}/none.rmc"], "remac-decode: error: {tmp}/none.rmc: no such file"),
    ("decode", [GOLDEN_GREY, "-o", "{tmp}/no/x.png"],
     "remac-decode: error: {tmp}/no/x.png: output directory {tmp}/no does not exist"),
    ("encode", [GREY, "-o", "{tmp}/no/x.rmc"], "remac-encode: error: {tmp}/no/x.rmc: output directory {tmp}/no does not exist"),
])
def test_6_errors_come_before_loading_any_model(which, args, line, tmp_path):
    args = [str(a).format(tmp=tmp_path) for a in args]
    p = subprocess.run([sys.executable, "-c", _PROBE, which, *args], capture_output=True, text=True, cwd=ROOT)
    assert p.stderr == line.format(tmp=tmp_path) + "\n"
    assert p.stdout.split() == ["1", "False", "False"]      # exit 1; neither torch nor onnxruntime loaded


def test_7_models_dir_must_exist(tmp_path):
    r = run(decode_main, [GOLDEN_GREY, "--models", tmp_path / "nope"], "remac-decode")
    assert r.exit_code == 2
    assert r.stderr == (f"remac-decode: error: Invalid value for '--models': Directory '{tmp_path / 'nope'}' does "
                        "not exist. (see remac-decode --help)\n")


def test_8_lib_build_takes_a_directory_and_info_is_a_table(small_library):
    lib, built = small_library
    assert built.stdout.endswith(f": 2 images -> {lib}\n")
    r = run(lib_main, ["info", lib], "remac-lib")
    assert r.exit_code == 0 and "{" not in r.output
    rows = {line.split()[-1]: line.split()[1:3] for line in r.output.splitlines() if line.endswith(".png")}
    assert rows == {"navcam.png": ["grey", "256x256"], "mastcam.png": ["colour", "256x256"]}
    assert "entries   2: 1 grey, 1 colour" in r.output
    info = json.loads(run(lib_main, ["info", lib, "--json"], "remac-lib").stdout)
    assert info["by_kind"] == {"grey": 1, "colour": 1} and len(info["entries"]) == 2


@pytest.mark.parametrize("shape", [(1, 1024), (1024, 1), (15, 257), (3, 300, 3)])
def test_9_thin_images_are_refused_before_the_work(shape):
    from remac import rover_encoder
    with pytest.raises(RemacError, match=r"too thin: a side under 16 px is padded to 64 px"):
        rover_encoder.encode_image(np.zeros(shape, np.uint8), quality=50)


def test_9_small_and_normal_images_are_still_coded(tmp_path):
    from remac import rover_encoder
    from remac.bitstream.container import SIGNATURE
    for shape in ((1, 64), (256, 1), (15, 256), (16, 1024)):
        assert rover_encoder.encode_image(np.full(shape, 100, np.uint8), quality=50).startswith(SIGNATURE)
    src = tmp_path / "row.png"
    Image.fromarray(np.zeros((1, 1024), np.uint8)).save(src)
    r = run(encode_main, [src], "remac-encode")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "row.png: a 1024x1 image is too thin" in r.stderr
