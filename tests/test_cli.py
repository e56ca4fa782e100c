"""The command lines as a user meets them: exit codes, messages, files left behind."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ground_decoder.cli import decode_main
from rover_encoder.cli import encode_main, lib_main
from tests.conftest import COLOUR, GREY, RGB3, pixels, psnr

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


def test_help_teaches():
    for cmd in (encode_main, decode_main, lib_main):
        r = run(cmd, ["--help"])
        assert r.exit_code == 0 and ("Examples" in r.output or "remac-lib build" in r.output)


def test_encode_decode_round_trip_with_defaults(tmp_path):
    src = tmp_path / "navcam.png"
    src.write_bytes(GREY.read_bytes())
    r = run(encode_main, [src, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout.splitlines()[0])
    assert info["ok"] and Path(info["output"]) == tmp_path / "navcam.rmc"
    r = run(decode_main, [tmp_path / "navcam.rmc"])
    assert r.exit_code == 0, r.output
    out = np.asarray(Image.open(tmp_path / "navcam.dec.png"))
    assert out.shape == (256, 256) and psnr(pixels(GREY), out) > 25
    assert info["encoder"] == "int8"             # grey: int8 measured -0.16% BD-rate vs float
    # the float analysis on request: another stream, decoded the same way
    r = run(encode_main, [src, "--encoder", "float", "-o", tmp_path / "f.rmc", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout.splitlines()[0])["encoder"] == "float"
    assert (tmp_path / "f.rmc").read_bytes() != (tmp_path / "navcam.rmc").read_bytes()
    assert run(decode_main, [tmp_path / "f.rmc"]).exit_code == 0


def test_batch_carries_on_past_a_bad_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    out.mkdir()
    r = run(encode_main, [GREY, tmp_path / "bad.png", COLOUR, "-o", out, "-q", "30"])
    assert r.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["mastcam_rgb.rmc", "navcam_gray.rmc"]
    assert "bad.png: not a readable image" in r.stderr and "1 of 3 files failed" in r.stderr
    assert "Traceback" not in r.output


@pytest.mark.parametrize("args,message", [
    (["missing.png"], "missing.png: no such file"),
    ([str(GREY), "--ref-lib", "nowhere/"], "nowhere is not a directory"),
    ([str(GREY), "--tile", "100"], "tile size 100"),
])
def test_encode_user_errors_are_one_line(args, message, tmp_path):
    r = run(encode_main, args + ["-o", str(tmp_path / "x.rmc")])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("remac-encode: error:")
    assert not (tmp_path / "x.rmc").exists()


def test_quality_out_of_range_is_a_usage_error():
    assert run(encode_main, [GREY, "-q", "101"]).exit_code == 2


def test_decode_against_wrong_library_names_it(tmp_path):
    lib = tmp_path / "lib"
    assert run(lib_main, ["build", RGB3, "-o", lib]).exit_code == 0
    run(encode_main, [GREY, "-o", tmp_path / "a.rmc"])            # default library
    r = run(decode_main, [tmp_path / "a.rmc", "--ref-lib", lib, "-o", tmp_path / "a.png"])
    assert r.exit_code == 1 and "needs reference library" in r.stderr
    assert not (tmp_path / "a.png").exists()


def test_stdin_to_stdout(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rover_encoder", "-", "-o", "-"], input=COLOUR.read_bytes(),
                       capture_output=True, cwd=ROOT, check=True)
    assert p.stdout.startswith(b"\x89RMC")
    d = subprocess.run([sys.executable, "-m", "ground_decoder", "-", "-o", "-"], input=p.stdout,
                       capture_output=True, cwd=ROOT, check=True)
    assert d.stdout.startswith(b"\x89PNG")


def test_rover_encoder_runs_where_torch_cannot_be_imported(tmp_path):
    """The rover path must work with torch, models/ and ground_decoder/ unimportable."""
    code = ("import sys\n"
            "for m in ('torch', 'models', 'ground_decoder'): sys.modules[m] = None\n"
            "from rover_encoder.cli import encode_main, lib_main\n"
            f"try:\n    lib_main(['build', {str(RGB3)!r}, '-o', {str(tmp_path / 'lib')!r}])\nexcept SystemExit:\n    pass\n"
            f"encode_main([{str(GREY)!r}, '-o', {str(tmp_path / 'x.rmc')!r}, '--ref-lib', {str(tmp_path / 'lib')!r}])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "x.rmc").read_bytes().startswith(b"\x89RMC")
    r = run(decode_main, [tmp_path / "x.rmc", "--ref-lib", tmp_path / "lib"])
    assert r.exit_code == 0, r.output


def test_library_build_info_and_rover_export(tmp_path):
    lib, rover = tmp_path / "lib", tmp_path / "rover"
    r = run(lib_main, ["build", GREY, COLOUR, "-o", lib])
    assert r.exit_code == 0, r.output
    info = json.loads(run(lib_main, ["info", lib, "--json"]).stdout)
    assert info["by_modality"] == {"colour": 1, "grey": 1}
    assert run(lib_main, ["export-rover", lib, "-o", rover]).exit_code == 0
    rinfo = json.loads(run(lib_main, ["info", rover, "--json"]).stdout)
    assert rinfo["library_id"] == info["library_id"] and rinfo["rover_export"]
    assert not (rover / "images").exists()
    # the rover encodes against its export; the ground needs the full library
    assert run(encode_main, [GREY, "-o", tmp_path / "g.rmc", "--ref-lib", rover]).exit_code == 0
    r = run(decode_main, [tmp_path / "g.rmc", "--ref-lib", rover])
    assert r.exit_code == 1 and "rover export" in r.stderr
    assert run(decode_main, [tmp_path / "g.rmc", "--ref-lib", lib]).exit_code == 0
    # a tampered reference image is caught by its hash
    victim = next((lib / "images").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")
    r = run(decode_main, [tmp_path / "g.rmc", "--ref-lib", lib])
    assert r.exit_code == 1 and "does not match its sha256" in r.stderr


def test_library_problems_are_distinct_errors(tmp_path):
    import json as _json
    lib = tmp_path / "lib"
    assert run(lib_main, ["build", GREY, RGB3, "-o", lib]).exit_code == 0
    assert run(encode_main, [GREY, "-o", tmp_path / "g.rmc", "--ref-lib", lib]).exit_code == 0
    # an entry removed from the library (its ID gone): the library ID changes, so it is a different library
    meta = _json.loads((lib / "library.json").read_text())
    gone = dict(meta, entries=meta["entries"][:1])
    (lib / "library.json").write_text(_json.dumps(gone))
    r = run(decode_main, [tmp_path / "g.rmc", "--ref-lib", lib])
    assert r.exit_code == 1 and "do not match library ID" in r.stderr
    # a consistent library built for another model: the rover refuses to select from it
    from bitstream import library as libmod
    (lib / "library.json").write_text(_json.dumps(meta))
    good = libmod.load(lib)
    libmod.write(lib, {"grey": "00" * 8}, list(good.entries.values()), good.latents, good.deep, good.shallow)
    r = run(encode_main, [GREY, "-o", tmp_path / "h.rmc", "--ref-lib", lib])
    assert r.exit_code == 1 and "was built for grey model 0000000000000000" in r.stderr
    # the right model, but an entry's statistics have the wrong latent width (damaged, re-IDed)
    latents = {k: (v[:, :-1] if e["modality"] == "grey" else v) for (k, v), e in
               zip(good.latents.items(), (good.entries[k] for k in good.latents))}
    libmod.write(lib, good.models, list(good.entries.values()), latents, good.deep, good.shallow)
    r = run(encode_main, [GREY, "-o", tmp_path / "h.rmc", "--ref-lib", lib])
    assert r.exit_code == 1 and "grey entries have latent widths [127], the model has 128" in r.stderr


def test_stream_naming_an_absent_reference(tmp_path, default_library):
    from bitstream.errors import LibraryError
    with pytest.raises(LibraryError, match="has no reference 00000000deadbeef"):
        default_library.stats16("00000000deadbeef")


def test_version_names_models_and_decoders():
    from bitstream import modelfile
    r = run(decode_main, ["--version"])
    assert r.exit_code == 0
    assert modelfile.load("grey").model_id.hex() in r.output and "decoder version" in r.output
    assert modelfile.load("colour").model_id.hex() in run(encode_main, ["--version"]).output
