"""The command lines as a user meets them: exit codes, messages, files left behind."""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from remac.bitstream import modelfile
from remac.ground_decoder.cli import decode_main
from remac.rover_encoder.cli import encode_main, lib_main
from tests.conftest import COLOUR, GREY, RGB3, pixels, psnr
from remac.rover_encoder.options import EncodeOptions

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


def test_help_teaches():
    for cmd in (encode_main, decode_main, lib_main):
        r = run(cmd, ["--help"])
        assert r.exit_code == 0 and ("Examples" in r.output or "remac-lib build" in r.output)


def test_ctrl_c_exits_130_with_one_line():
    import click

    from remac.rover_encoder.cli_support import Command

    @click.command(cls=Command)
    def slow():
        raise KeyboardInterrupt
    r = CliRunner().invoke(slow, [], prog_name="remac-x")
    assert (r.exit_code, r.stderr) == (130, "remac-x: interrupted\n")


def test_dash_h_is_help_on_every_command():
    from remac.rover_encoder.info import main as info_main
    from evaluation.cli import main as eval_main
    for cmd, args in ((encode_main, []), (decode_main, []), (lib_main, []), (lib_main, ["build"]),
                      (info_main, []), (eval_main, [])):
        short, long = run(cmd, args + ["-h"]), run(cmd, args + ["--help"])
        assert short.exit_code == 0 and short.output == long.output and "Usage:" in short.output


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
])
def test_encode_user_errors_are_one_line(args, message, tmp_path):
    r = run(encode_main, args + ["-o", str(tmp_path / "x.rmc")])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("remac-encode: error:")
    assert not (tmp_path / "x.rmc").exists()


def test_quality_out_of_range_is_a_usage_error():
    assert run(encode_main, [GREY, "-q", "101"]).exit_code == 2
    assert run(encode_main, [GREY, "--no-refs", "--keep-refs"]).exit_code == 2


@pytest.mark.parametrize("cmd,args,line", [
    (encode_main, [GREY, "-q", "101"], "remac-encode: error: Invalid value for '-q' / '--quality': 101.0 is not "
                                       "in the range 0<=x<=100. (see remac-encode --help)"),
    (encode_main, [GREY, "--bpp", "inf"], "remac-encode: error: Invalid value for '--bpp': inf is not in the "
                                          "range 0<x<=64. (see remac-encode --help)"),
    (encode_main, [GREY, "--no-refs", "--keep-refs"],
     "remac-encode: error: --no-refs and --keep-refs exclude each other (see remac-encode --help)"),
    (encode_main, [GREY, "--bpp", "nan"], "remac-encode: error: Invalid value for '--bpp': nan is not a number. "
                                          "(see remac-encode --help)"),
    (encode_main, [GREY, "-q", "nan"], "remac-encode: error: Invalid value for '-q' / '--quality': nan is not a "
                                       "number. (see remac-encode --help)"),
    (encode_main, [GREY, GREY, "--tile", "17"], "remac-encode: error: Invalid value for '--tile': tile size 17 "
                                                "must be a multiple of 64 in 64..4096. (see remac-encode --help)"),
    (lib_main, ["build"], "remac-lib build: error: Missing argument 'IMAGES...'. (see remac-lib build --help)"),
    (decode_main, [], "remac-decode: error: Missing argument 'FILES...'. (see remac-decode --help)"),
])
def test_usage_errors_are_one_line(cmd, args, line):
    prog = {encode_main: "remac-encode", decode_main: "remac-decode", lib_main: "remac-lib"}[cmd]
    r = CliRunner().invoke(cmd, [str(a) for a in args], prog_name=prog)
    assert r.exit_code == 2 and r.stderr.splitlines() == [line], r.stderr


@pytest.mark.parametrize("cmd,name,make", [(encode_main, "img.png", lambda p: p.write_bytes(GREY.read_bytes())),
                                           (decode_main, "img.rmc", None)])
def test_an_output_that_is_the_input_is_refused(cmd, name, make, tmp_path):
    src = tmp_path / name
    if make:
        make(src)
    else:
        assert run(encode_main, [GREY, "-q", "5", "-o", src]).exit_code == 0
    before = src.read_bytes()
    os.symlink(src, tmp_path / "link")
    for out in (src, tmp_path / "link"):
        r = run(cmd, [src, "-o", out])
        assert r.exit_code == 1 and r.stderr.splitlines()[0].endswith(f"{out}: output would overwrite the input")
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "link"])


def test_decode_against_wrong_library_names_it(tmp_path):
    lib = tmp_path / "lib"
    assert run(lib_main, ["build", RGB3, "-o", lib]).exit_code == 0
    run(encode_main, [GREY, "--keep-refs", "-o", tmp_path / "a.rmc"])       # names a default-library entry
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
            "from remac.rover_encoder.cli import encode_main, lib_main\n"
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
    assert info["by_modality"] == {"grey": 2}      # a colour image serves colour streams' luma plane
    assert run(lib_main, ["export-rover", lib, "-o", rover]).exit_code == 0
    rinfo = json.loads(run(lib_main, ["info", rover, "--json"]).stdout)
    assert rinfo["library_id"] == info["library_id"] and rinfo["rover_export"]
    assert not (rover / "images").exists()
    # the rover encodes against its export; the ground needs the full library
    assert run(encode_main, [GREY, "--keep-refs", "-o", tmp_path / "g.rmc", "--ref-lib", rover]).exit_code == 0
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
    from remac.bitstream import library as libmod
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
    m = modelfile.load("grey").m
    assert r.exit_code == 1 and f"grey entries have latent widths [{m - 1}], the model has {m}" in r.stderr


def test_stream_naming_an_absent_reference(tmp_path, default_library):
    from remac.bitstream.errors import LibraryError
    with pytest.raises(LibraryError, match="has no reference 00000000deadbeef"):
        default_library.stats16("00000000deadbeef")


def test_version_names_models_and_decoders():
    from remac.bitstream import modelfile
    r = run(decode_main, ["--version"])
    assert r.exit_code == 0
    assert modelfile.load("grey").model_id.hex() in r.output and "decoder version" in r.output
    out = run(encode_main, ["--version"]).output
    assert modelfile.load("grey").model_id.hex() in out and "writes .rmc 4.0" in out


@pytest.mark.parametrize("flag", ["-V", "--help"])
def test_encoder_version_and_help_do_not_load_onnxruntime(flag):
    """Start-up: the analysis runtime is imported only when something is encoded."""
    code = ("import sys\nfrom remac.rover_encoder.cli import encode_main\n"
            f"try:\n    encode_main([{flag!r}])\nexcept SystemExit:\n    pass\n"
            "assert 'onnxruntime' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)


# ----- exit codes, directories, versions, lossy outputs, metadata, missing torch, output failures ------

@pytest.fixture(scope="module")
def small_rmc(default_library):
    """A 128x64 grey stream of two 64-px tiles (fast to decode)."""
    from remac.rover_encoder.encode import encode
    from remac.rover_encoder.imageio import load_image
    img = load_image(GREY)
    img.pixels = img.pixels[:, :64, :128]
    return encode(img, EncodeOptions(5000, library=default_library, tile=64)).data


def test_decode_exit_codes_clean_concealed_failed(tmp_path, small_rmc):
    clean, crc, cut, hopeless = (tmp_path / n for n in ("clean.rmc", "crc.rmc", "cut.rmc", "hopeless.rmc"))
    clean.write_bytes(small_rmc)
    b = bytearray(small_rmc)
    b[-30] ^= 0xFF                                   # inside the last tile
    crc.write_bytes(bytes(b))
    cut.write_bytes(small_rmc[:-3])                  # the last tile cut short: lost, concealed
    hopeless.write_bytes(small_rmc[:100])            # no whole tile
    r = run(decode_main, [clean, "-o", tmp_path / "clean.png"])
    assert r.exit_code == 0 and "warning" not in r.stderr
    for src in (crc, cut):                           # image written, damage reported, exit 3
        out = tmp_path / (src.stem + ".png")
        r = run(decode_main, [src, "-o", out])
        assert r.exit_code == 3 and out.exists() and "warning" in r.stderr, r.output
    assert "lost tiles 1 (filled flat)" in run(decode_main, [crc, "-o", tmp_path / "x.png"]).stderr
    r = run(decode_main, [hopeless, "-o", tmp_path / "h.png"])
    assert r.exit_code == 1 and not (tmp_path / "h.png").exists()
    r = run(decode_main, [crc, "--strict", "-o", tmp_path / "s.png"])
    assert r.exit_code == 1 and not (tmp_path / "s.png").exists()
    out = tmp_path / "batch"
    r = run(decode_main, [clean, crc, "-o", str(out) + "/"])
    assert r.exit_code == 3 and "1 of 2 files were damaged" in r.stderr
    r = run(decode_main, [crc, tmp_path / "missing.rmc", "-o", str(out) + "/"])
    assert r.exit_code == 1 and "1 of 2 files failed" in r.stderr
    for cmd, codes in ((decode_main, "3 all written"), (encode_main, "2 usage")):
        assert codes in " ".join(run(cmd, ["--help"]).output.split())


def test_directories_in_and_out(tmp_path):
    src = tmp_path / "frames"
    (src / "sol2").mkdir(parents=True)
    small = Image.open(GREY).crop((0, 0, 64, 64))
    small.save(src / "a.png")
    small.save(src / "sol2" / "b.png")
    small.save(src / ".hidden.png")
    (src / "notes.txt").write_text("not an image")
    r = run(encode_main, [src, "-o", str(tmp_path / "out") + "/", "-q", "20"])     # out/ is created
    assert r.exit_code == 0, r.output
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.rmc")) == \
        ["a.rmc", "sol2/b.rmc"]
    r = run(decode_main, [tmp_path / "out", "-o", str(tmp_path / "dec") + "/"])
    assert r.exit_code == 0, r.output
    assert sorted(str(p.relative_to(tmp_path / "dec")) for p in (tmp_path / "dec").rglob("*.png")) == \
        ["a.dec.png", "sol2/b.dec.png"]
    (tmp_path / "empty").mkdir()
    r = run(encode_main, [tmp_path / "empty", GREY, "-o", str(tmp_path / "o2") + "/"])
    assert r.exit_code == 1 and "empty: is a directory with no image files in it" in r.stderr
    assert (tmp_path / "o2" / "navcam_gray.rmc").exists()            # the batch carried on
    r = run(encode_main, [src, "-o", tmp_path / "nodir"])            # several outputs, no such directory
    assert r.exit_code == 1 and "end it with / to create it" in r.stderr


def test_fractional_quality(tmp_path):
    r = run(encode_main, [GREY, "-q", "50.5", "-o", tmp_path / "f.rmc", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["quality"] == 50.5
    sizes = {}
    for q in ("50", "50.5", "51"):
        run(encode_main, [GREY, "-q", q, "-o", tmp_path / f"{q}.rmc"])
        sizes[q] = (tmp_path / f"{q}.rmc").stat().st_size
    assert sizes["50"] < sizes["50.5"] < sizes["51"]
    assert (tmp_path / "50.5.rmc").read_bytes()[16:18] == b"\x04\x00"      # format 4.0, q100 at RHDR 16
    assert (tmp_path / "50.5.rmc").read_bytes()[32:34] == struct.pack(">H", 5050)
    r = run(decode_main, [tmp_path / "f.rmc", "-o", tmp_path / "f.png", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["quality"] == 50.5
    assert run(encode_main, [GREY, "-q", "100.5"]).exit_code == 2


def test_short_version_flag_on_every_command():
    from remac.rover_encoder.info import main as info_main
    from evaluation.cli import main as eval_main
    for cmd, prog in ((encode_main, "remac-encode"), (decode_main, "remac-decode"), (lib_main, "remac-lib"),
                      (info_main, "remac-info"), (eval_main, "remac-eval")):
        r = run(cmd, ["-V"])
        assert r.exit_code == 0 and r.output.startswith(prog + " "), (prog, r.output)


def test_lossy_output_needs_force(tmp_path, small_rmc):
    src = tmp_path / "s.rmc"
    src.write_bytes(small_rmc)
    r = run(decode_main, [src, "-o", tmp_path / "s.jpg"])
    assert r.exit_code == 1 and not (tmp_path / "s.jpg").exists()
    assert r.stderr.splitlines() == [f"remac-decode: error: {tmp_path / 's.jpg'}: JPEG is lossy and would "
                                     "degrade the decoded image again; write .png (or .tif), or use --force"]
    r = run(decode_main, [src, "-o", tmp_path / "s.webp", "--force"])
    assert r.exit_code == 0 and "warning" in r.stderr and "lossy WEBP (quality 95)" in r.stderr
    assert Image.open(tmp_path / "s.webp").format == "WEBP"


def test_outputs_the_format_cannot_hold_are_refused_by_name(tmp_path, default_library, monkeypatch):
    import io

    import remac.ground_decoder.decode
    from remac import ground_decoder
    from remac.rover_encoder.encode import encode
    from remac.rover_encoder.imageio import load_image
    colour = load_image(COLOUR)
    colour.pixels = colour.pixels[:, :64, :64]
    (tmp_path / "c.rmc").write_bytes(encode(colour, EncodeOptions(5000, library=default_library, tile=64)).data)
    with monkeypatch.context() as patch:        # colour into .pgm: refused from the header, before decoding
        patch.setattr(ground_decoder.decode, "decode", lambda *a, **k: pytest.fail("decoded before refusing"))
        r = run(decode_main, [tmp_path / "c.rmc", "-o", tmp_path / "c.pgm"])
    assert r.exit_code == 1 and not (tmp_path / "c.pgm").exists() and r.stderr.splitlines() == [
        f"remac-decode: error: {tmp_path / 'c.pgm'}: a PGM file holds grey images and this one is colour; "
        "write .ppm or .png"]
    buf = io.BytesIO()
    Image.fromarray((pixels(GREY)[:64, :64].astype(np.uint16) * 257)).save(buf, "PNG")      # 16-bit grey
    grey = encode(load_image(buf.getvalue()), EncodeOptions(5000, library=default_library, tile=64))
    (tmp_path / "g.rmc").write_bytes(grey.data)
    r = run(decode_main, [tmp_path / "g.rmc", "-o", tmp_path / "g.bmp"])
    assert r.exit_code == 1 and not (tmp_path / "g.bmp").exists() and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(f"remac-decode: error: {tmp_path / 'g.bmp'}: cannot write a uint16 image as BMP")


def test_metadata_is_carried_to_the_decoded_png_unless_stripped(tmp_path):
    from PIL.PngImagePlugin import PngInfo
    exif = Image.Exif()
    exif[0x010E] = "Navcam left, sol 1234"           # ImageDescription
    info = PngInfo()
    info.add_text("Title", "Gale crater")
    info.add_itxt("Comment", "\u00b5m scale \u2713")
    xmp = "<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    info.add_itxt("XML:com.adobe.xmp", xmp)
    src = tmp_path / "m.png"
    Image.open(GREY).crop((0, 0, 64, 64)).save(src, pnginfo=info, exif=exif)
    r = run(encode_main, [src, "-o", tmp_path / "m.rmc", "--json"])
    assert json.loads(r.stdout)["metadata"] == ["EXIF " + str(len(exif.tobytes()) - 6) + " bytes",
                                                f"XMP {len(xmp)} bytes", "text: Title, Comment"]
    assert run(decode_main, [tmp_path / "m.rmc", "-o", tmp_path / "m.out.png"]).exit_code == 0
    out = Image.open(tmp_path / "m.out.png")
    out.load()
    assert out.text["Title"] == "Gale crater" and out.text["Comment"] == "\u00b5m scale \u2713"
    assert out.info["xmp"] == xmp.encode()
    assert out.getexif()[0x010E] == "Navcam left, sol 1234"
    r = run(encode_main, [src, "-o", tmp_path / "s.rmc", "--strip", "--json"])
    assert json.loads(r.stdout)["metadata"] == []
    assert b"meta" not in (tmp_path / "s.rmc").read_bytes()[:200]
    assert (tmp_path / "m.rmc").stat().st_size > (tmp_path / "s.rmc").stat().st_size


def test_ground_commands_without_torch_say_so_in_one_line(tmp_path, small_rmc):
    """A rover-only install: remac-decode explains, remac-info works (it never needs torch)."""
    (tmp_path / "s.rmc").write_bytes(small_rmc)
    code = ("import sys\n"
            "sys.modules['torch'] = None\n"
            "from remac.ground_decoder.cli import decode_main\n"
            "from remac.rover_encoder.info import main as info_main\n"
            "which = sys.argv[1]\n"
            "(decode_main if which == 'decode' else info_main)(sys.argv[2:], prog_name='remac-' + which)\n")
    p = subprocess.run([sys.executable, "-c", code, "decode", str(tmp_path / "s.rmc")], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 1 and not (tmp_path / "s.dec.png").exists()
    assert p.stderr == "remac-decode: error: the ground decoder needs PyTorch: pip install 'remac[ground]'\n"
    p = subprocess.run([sys.executable, "-c", code, "decode", "-V"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and "no ground decoder (needs PyTorch" in p.stdout
    p = subprocess.run([sys.executable, "-c", code, "info", str(tmp_path / "s.rmc")], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 0 and "CRC ok" in p.stdout, p.stderr


def test_outputs_that_are_not_plain_files_are_written_into_not_replaced(tmp_path):
    # (a FIFO stands in for /dev/null and /dev/stdout: a failing run must not replace system devices)
    import stat
    import threading
    # a FIFO: its reader gets the stream
    fifo, got = tmp_path / "p", []
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert run(encode_main, [GREY, "-o", fifo]).exit_code == 0
    reader.join(30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and got
    assert run(encode_main, [GREY, "-o", tmp_path / "direct.rmc"]).exit_code == 0
    assert got[0] == (tmp_path / "direct.rmc").read_bytes()
    # a symbolic link: the file it names is replaced, the link stays a link
    (tmp_path / "real.rmc").write_bytes(b"old")
    (tmp_path / "link.rmc").symlink_to(tmp_path / "real.rmc")
    assert run(encode_main, [GREY, "-o", tmp_path / "link.rmc"]).exit_code == 0
    assert (tmp_path / "link.rmc").is_symlink() and (tmp_path / "real.rmc").read_bytes() == got[0]


def test_output_failures_are_one_line_and_leave_nothing(tmp_path, monkeypatch):
    # stdout on a full disk
    with open("/dev/full", "wb") as full:
        p = subprocess.run([sys.executable, "-m", "rover_encoder", str(GREY), "-o", "-"], stdout=full,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.returncode == 1
    assert p.stderr == "remac-encode: error: stdout: cannot write (No space left on device)\n"
    # stdout closed (>&-): Python starts with sys.stdout None
    p = subprocess.run([sys.executable, "-m", "rover_encoder", str(GREY), "-q", "5", "-o", "-"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                       preexec_fn=lambda: os.close(1))
    assert (p.returncode, p.stderr) == (1, "remac-encode: error: stdout: cannot write (closed)\n")
    # a file on a full disk (fsync reports it): no partial output, no temporary left
    from remac.rover_encoder import cli_support

    def full_disk(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cli_support.os, "fsync", full_disk)
    r = run(encode_main, [GREY, "-o", tmp_path / "x.rmc"])
    assert r.exit_code == 1 and r.stderr.splitlines() == [
        f"remac-encode: error: {tmp_path / 'x.rmc'}: cannot write (No space left on device)"]
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    # an output "directory" that is a file
    (tmp_path / "f").write_text("")
    r = run(encode_main, [GREY, "-o", tmp_path / "f" / "x.rmc"])
    assert r.exit_code == 1 and len(r.stderr.splitlines()) == 1 and "cannot write (Not a directory)" in r.stderr
    # a read-only directory (root ignores permissions: checked only for other users)
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        r = run(encode_main, [GREY, "-o", ro / "x.rmc"])
        assert r.exit_code == 1 and "cannot write (Permission denied)" in r.stderr and not list(ro.iterdir())
