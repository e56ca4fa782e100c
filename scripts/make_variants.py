"""Harder validation sets derived from val/color and val/gray (evaluation.variants says what each is).
`python -m scripts.make_variants [SRC] [OUT] [GREY_SRC] [NATIVE_SRC]` writes OUT/color_wb,
OUT/color_desat, OUT/color_half, OUT/color_luma, OUT/gray_shift4 and OUT/gray_native_shift3
(defaults: ../shared/data/val/color, /work/variants, ../shared/data/val/gray,
../shared/data/val/gray_native).
"""
import sys
from pathlib import Path

from evaluation.variants import write_set


def main(src="../shared/data/val/color", out="/work/variants", grey_src="../shared/data/val/gray",
         native_src="../shared/data/val/gray_native"):
    jobs = [(grey_src, "shift4", "gray_shift4"), (native_src, "shift3", "gray_native_shift3")]
    jobs += [(src, kind, f"color_{kind}") for kind in ("wb", "desat", "half", "luma")]
    for source, kind, name in jobs:
        write_set(Path(source), kind, Path(out) / name)
        print(Path(out) / name)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(print(__doc__))
    main(*sys.argv[1:])
