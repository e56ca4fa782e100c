"""PDS3 and PDS4 archive products as encoder inputs (rover_encoder/pds.py, via pdr): synthetic
products written here, encoded and decoded through the command lines."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from remac.bitstream.errors import RemacError
from remac.rover_encoder.info import main as info_main
from remac.ground_decoder.cli import decode_main
from remac.rover_encoder import pds
from remac.rover_encoder.cli import encode_main
from remac.rover_encoder.imageio import load_image, png_sbit
from tests.conftest import COLOUR, GREY, pixels, psnr
from tests.test_bitdepth import png, twelve_bit

pytest.importorskip("pdr")

RECORD = 512


def pds3_label(a: np.ndarray, product_id: str, pointer: str, mask: str = None) -> list:
    """PDS3 keywords of an IMAGE object holding `a`: (lines, samples) or (bands, lines, samples)."""
    bits = 8 * a.dtype.itemsize
    lines = ["PDS_VERSION_ID = PDS3", "RECORD_TYPE = FIXED_LENGTH", f"RECORD_BYTES = {RECORD}",
             "FILE_RECORDS = @RECORDS@", "LABEL_RECORDS = @LABEL@", f"^IMAGE = {pointer}",
             f'PRODUCT_ID = "{product_id}"', "INSTRUMENT_ID = NAV_LEFT_B", "OBJECT = IMAGE",
             f"  LINES = {a.shape[-2]}", f"  LINE_SAMPLES = {a.shape[-1]}", f"  BANDS = {a.shape[0] if a.ndim == 3 else 1}",
             "  BAND_STORAGE_TYPE = BAND_SEQUENTIAL",
             f"  SAMPLE_TYPE = {'UNSIGNED_INTEGER' if bits == 8 else 'MSB_UNSIGNED_INTEGER'}", f"  SAMPLE_BITS = {bits}"]
    if mask:
        lines.append(f"  SAMPLE_BIT_MASK = {mask}")
    return lines + ["END_OBJECT = IMAGE", "END"]


def write_pds3(path, a, product_id, mask=None, detached=False):
    """An attached-label product (label records, then the image), or with detached=True a .LBL
    label beside a data file holding only the image. 16-bit samples in MSB words."""
    body = a.astype(">u2" if a.dtype == np.uint16 else "u1").tobytes()
    data_records = -(-len(body) // RECORD)
    if detached:
        text = "\r\n".join(pds3_label(a, product_id, f'"{path.stem}.IMG"', mask)) + "\r\n"
        path.with_suffix(".LBL").write_text(text.replace("@RECORDS@", str(data_records)).replace("@LABEL@", "0"))
        path.with_suffix(".IMG").write_bytes(body.ljust(data_records * RECORD, b"\0"))
        return
    text = "\r\n".join(pds3_label(a, product_id, "2", mask)).replace("@LABEL@", "1")
    label = (text.replace("@RECORDS@", str(1 + data_records)) + "\r\n").encode().ljust(RECORD, b" ")
    assert len(label) == RECORD
    path.write_bytes(label + body.ljust(data_records * RECORD, b"\0"))


def write_pds4(label, a, lid, vid="1.0", bit_mask=None, band_last=False):
    """A PDS4 label (Product_Observational) and its raw data file (.img, MSB). band_last: a 3-band
    image stored (Line, Sample, Band) instead of (Band, Line, Sample)."""
    names = ["Line", "Sample"] if a.ndim == 2 else (["Line", "Sample", "Band"] if band_last else ["Band", "Line", "Sample"])
    stored = a.transpose(1, 2, 0) if a.ndim == 3 and band_last else a
    axes = "".join(f"<Axis_Array><axis_name>{n}</axis_name><elements>{size}</elements>"
                   f"<sequence_number>{i + 1}</sequence_number></Axis_Array>"
                   for i, (n, size) in enumerate(zip(names, stored.shape)))
    stats = f"<Object_Statistics><bit_mask>{bit_mask}</bit_mask></Object_Statistics>" if bit_mask else ""
    data_type = "UnsignedByte" if a.dtype == np.uint8 else "UnsignedMSB2"
    label.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1">
 <Identification_Area>
  <logical_identifier>{lid}</logical_identifier>
  <version_id>{vid}</version_id>
  <title>synthetic REMAC test product</title>
  <information_model_version>1.15.0.0</information_model_version>
  <product_class>Product_Observational</product_class>
 </Identification_Area>
 <File_Area_Observational>
  <File><file_name>{label.stem}.img</file_name></File>
  <Array_{a.ndim}D_Image>
   <local_identifier>image</local_identifier>
   <offset unit="byte">0</offset>
   <axes>{a.ndim}</axes>
   <axis_index_order>Last Index Fastest</axis_index_order>
   <Element_Array><data_type>{data_type}</data_type></Element_Array>
   {axes}
   {stats}
  </Array_{a.ndim}D_Image>
 </File_Area_Observational>
</Product_Observational>
""")
    label.with_suffix(".img").write_bytes(stored.astype(stored.dtype.newbyteorder(">")).tobytes())


def invoke(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


GREY8 = pixels(GREY)[:96, :160]                     # not square: catches a transposed geometry
GREY12 = twelve_bit(GREY8)
RGB8 = pixels(COLOUR)[:64, :96]


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """PDS3 (attached 12-bit, attached 8-bit RGB, detached 8-bit) and PDS4 (12-bit grey, 8-bit RGB
    stored band-last) products, an 8-bit PNG of the same scene, and things that are not products,
    encoded as one directory and decoded as one."""
    tmp = tmp_path_factory.mktemp("pds")
    src = tmp / "in"
    (src / "pds4").mkdir(parents=True)
    write_pds3(src / "NLB_0001_12BIT.IMG", GREY12, "NLB_0001_12BIT", mask="2#0000111111111111#")
    write_pds3(src / "ML0_0002_RGB.IMG", RGB8.transpose(2, 0, 1), "ML0_0002_RGB")
    write_pds3(src / "DET_0003.IMG", GREY8, "DET_0003", detached=True)
    write_pds4(src / "pds4" / "grey12.xml", GREY12, "urn:nasa:pds:remac_test:data:grey12", "2.0",
               bit_mask="0000111111111111")
    write_pds4(src / "pds4" / "rgb8.xml", RGB8.transpose(2, 0, 1), "urn:nasa:pds:remac_test:data:rgb8", band_last=True)
    Image.fromarray(GREY8).save(src / "ref8.png")
    (src / "notes.xml").write_text("<notes>not a PDS label</notes>")
    enc, dec = tmp / "enc", tmp / "dec"
    r_enc = invoke(encode_main, [src, "-o", str(enc) + "/", "-q", 75, "--json"])
    r_dec = invoke(decode_main, [enc, "-o", str(dec) + "/", "--json"])
    return src, enc, dec, r_enc, r_dec


EXPECTED = {  # output stem: (product ID, bit depth, shape of the decoded image)
    "NLB_0001_12BIT": ("NLB_0001_12BIT", 12, GREY8.shape),
    "ML0_0002_RGB": ("ML0_0002_RGB", 8, RGB8.shape),
    "DET_0003": ("DET_0003", 8, GREY8.shape),
    "pds4/grey12": ("urn:nasa:pds:remac_test:data:grey12::2.0", 12, GREY8.shape),
    "pds4/rgb8": ("urn:nasa:pds:remac_test:data:rgb8::1.0", 8, RGB8.shape),
}


def test_a_directory_yields_each_product_once(products):
    src, enc, _, r_enc, _ = products
    assert r_enc.exit_code == 0, r_enc.output
    lines = [json.loads(x) for x in r_enc.stdout.splitlines()]
    # the detached label's data file, PDS4 data files and a non-PDS .xml are not inputs of their own
    assert sorted(str(Path(d["file"]).relative_to(src)) for d in lines) == \
        ["DET_0003.LBL", "ML0_0002_RGB.IMG", "NLB_0001_12BIT.IMG", "pds4/grey12.xml", "pds4/rgb8.xml", "ref8.png"]
    by_stem = {d["output"].removeprefix(str(enc) + "/").removesuffix(".rmc"): d for d in lines}
    for stem, (pid, depth, shape) in EXPECTED.items():
        d = by_stem[stem]
        assert (d["product_id"], d["bit_depth"], d["height"], d["width"]) == (pid, depth, *shape[:2])
        assert d["channels"] == (shape[2] if len(shape) == 3 else 1)
    assert by_stem["ref8"]["product_id"] is None


def test_product_ids_geometry_and_depth_survive_decoding(products):
    _, enc, dec, _, r_dec = products
    assert r_dec.exit_code == 0, r_dec.output
    for stem, (pid, depth, shape) in EXPECTED.items():
        path = dec / f"{stem}.dec.png"
        im = Image.open(path)
        assert im.text.get("PDS:PRODUCT_ID") == pid                  # the decoded file traces back
        out = np.asarray(im)
        assert out.shape == shape and out.dtype == (np.uint8 if depth == 8 else np.uint16)
        assert png_sbit(path.read_bytes()) == (12 if depth == 12 else None)
    r = invoke(info_main, [enc / "pds4" / "grey12.rmc"])
    assert "  product     urn:nasa:pds:remac_test:data:grey12::2.0 (PDS)" in r.stdout.splitlines()
    r = invoke(info_main, [enc, "--json"])
    ids = {json.loads(x)["product_id"] for x in r.stdout.splitlines()}
    assert ids == {pid for pid, _, _ in EXPECTED.values()} | {None}


def test_decoded_quality_matches_the_eight_bit_rendering(products):
    """The test_bitdepth floor: a 12-bit product decodes within 0.3 dB (at its own peak) of the
    8-bit PNG of the same scene; 8-bit products decode exactly as their PNG would."""
    _, _, dec, _, _ = products
    ref = pixels(dec / "ref8.dec.png")
    p8 = psnr(GREY8, ref, peak=255)
    for stem in ("NLB_0001_12BIT", "pds4/grey12"):
        p12 = psnr(GREY12, pixels(dec / f"{stem}.dec.png"), peak=4095)
        assert abs(p12 - p8) <= 0.3, (stem, p12, p8)
    assert np.array_equal(pixels(dec / "DET_0003.dec.png"), ref)
    assert psnr(RGB8, pixels(dec / "ML0_0002_RGB.dec.png")) > 20
    assert np.array_equal(pixels(dec / "pds4/rgb8.dec.png"), pixels(dec / "ML0_0002_RGB.dec.png"))


def test_samples_and_depth_are_those_of_the_png_route(tmp_path):
    write_pds3(tmp_path / "a.IMG", GREY12, "A", mask="2#0000111111111111#")
    img = pds.load_product(str(tmp_path / "a.IMG"))
    assert img.bit_depth == 12 and img.metadata.product_id == "A"
    assert np.array_equal(img.pixels, load_image(png(GREY12, sbit=12)).pixels)
    assert pds.load_product(str(tmp_path / "a.IMG"), bit_depth=16).bit_depth == 16      # --bit-depth wins
    write_pds3(tmp_path / "b.IMG", GREY12, "B")                                         # no mask: the word
    assert pds.load_product(str(tmp_path / "b.IMG")).bit_depth == 16
    write_pds4(tmp_path / "c.xml", GREY12, "urn:x:c", bit_mask="0000011111111111")     # 11 bits -> 12
    c = pds.load_product(str(tmp_path / "c.xml"))
    assert c.bit_depth == 12 and c.warnings == [f"{tmp_path / 'c.xml'}: the label's bit depth 11 is coded as 12-bit"]
    over = GREY12.copy()
    over[3, 4] = 5000
    write_pds3(tmp_path / "d.IMG", over, "D", mask="2#0000111111111111#")
    r = invoke(encode_main, [tmp_path / "d.IMG", "-o", tmp_path / "d.rmc"])
    assert r.exit_code == 1 and not (tmp_path / "d.rmc").exists()
    assert r.stderr.strip() == (f"remac-encode: error: {tmp_path / 'd.IMG'}: sample value 5000 exceeds the 12-bit "
                                "maximum 4095 (depth from the label's bit depth)")


def test_what_cannot_be_coded_is_refused_in_one_line(tmp_path):
    write_pds3(tmp_path / "four.IMG", np.zeros((4, 8, 8), np.uint8), "FOUR")
    with pytest.raises(RemacError, match=r"four.IMG: 4 bands; REMAC codes 1 \(grey\) or 3 \(RGB\)$"):
        pds.load_product(str(tmp_path / "four.IMG"))
    write_pds3(tmp_path / "x.IMG", GREY8[:16, :16], "X")
    r = CliRunner().invoke(encode_main, ["-", "-o", str(tmp_path / "x.rmc")], input=(tmp_path / "x.IMG").read_bytes())
    assert r.exit_code == 1 and "stdin: PDS products are read from files" in r.stderr


def test_without_pdr_a_pds_input_fails_in_one_line_and_images_still_encode(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pdr", None)             # import pdr -> ImportError
    write_pds3(tmp_path / "x.IMG", GREY8[:32, :32], "X")
    Image.fromarray(GREY8[:32, :32]).save(tmp_path / "y.png")
    r = invoke(encode_main, [tmp_path, "-o", str(tmp_path / "out") + "/"])
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == (f"remac-encode: error: {tmp_path / 'x.IMG'}: reading PDS products needs "
                                        "the pdr package: pip install 'remac[pds]'")
    assert (tmp_path / "out" / "y.rmc").exists() and not (tmp_path / "out" / "x.rmc").exists()
