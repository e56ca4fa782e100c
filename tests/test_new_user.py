"""What a new user met first (issue 29, "New-user defects"), one test per defect: the model store's
truth, program names in usage errors, early errors, --models."""
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from remac.bitstream.errors import ModelError
from remac.ground_decoder.cli import decode_main
from remac.rover_encoder.cli import encode_main, lib_main
from remac.rover_encoder.info import main as info_main
from tests.conftest import GOLDEN_GREY, GREY

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, args, prog):
    return CliRunner().invoke(cmd, [str(a) for a in args], prog_name=prog, catch_exceptions=False)


def test_3_a_stream_of_a_pruned_release_names_the_command_that_restores_it():
    from remac.bitstream import modelfile
    with pytest.raises(ModelError, match=r"`bash scripts/restore_release.sh 0123456789abcdef` restores it into "
                                         r"models/store, or add a store that has it with --models DIR$"):
        modelfile.by_id(bytes.fromhex("0123456789abcdef"))
    help_text = " ".join(run(decode_main, ["--help"], "remac-decode").output.split())
    assert "every earlier release" not in help_text
    assert "the two releases before it decode as installed" in help_text
    assert "bash scripts/restore_release.sh MODEL_ID" in help_text


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