"""Building and exporting reference libraries (`remac-lib`). Runs the rover's own analysis, so a
library can be built on the rover or on the ground with the same code and no torch."""
import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from remac.bitstream import colour, library as lib, modelfile
from remac.bitstream.container import Header
from remac.bitstream.errors import LibraryError
from remac.rover_encoder.analysis import analyzer, gain_for_quality, stats16
from remac.rover_encoder.cli_support import umask
from remac.rover_encoder.options import DEFAULT_TILE
from remac.rover_encoder.prepared import analyse_tiles
from remac.rover_encoder.imageio import load_image


def _png_bytes(img) -> bytes:
    a = np.floor(img.pixels * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def build(images, out: Path, threads: int = 1, progress=None) -> str:
    """images: paths. Builds the library in a temporary sibling directory and renames it to `out`
    (which must not exist or be empty), so a failure leaves nothing behind. -> library ID."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LibraryError(f"{out}: exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())       # mkdtemp's 0o700 would keep a ground service of another user out
        library_id = _build_into(images, tmp, threads, progress)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        return library_id
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build_into(images, out: Path, threads, progress) -> str:
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries, latents, deep_all, shallow_all, models = [], {}, {}, {}, {}
    for path in images:
        img = load_image(path)
        model = modelfile.for_channels(img.pixels.shape[0])
        # the reference is stored as 8-bit pixels; describe exactly what is stored
        data = _png_bytes(img)
        img = load_image(data, name=str(path))
        channels = img.pixels.shape[0]
        if channels == 3:        # colour images serve colour streams' luma plane (format 3.0)
            img.pixels = colour.to_planes(img.pixels, 0)[0][None]
        entry_id = hashlib.sha256(data).hexdigest()[:16]
        if entry_id in latents:
            continue
        header = Header(model.model_id, img.width, img.height, img.pixels.shape[0], img.pixels.shape[0], 8, 0,
                        DEFAULT_TILE, DEFAULT_TILE)
        # float analysis: the library (and its ID) must not depend on which analysis a rover runs
        run = analyzer(model.name, threads, "float")
        _, deep, shallow = analyse_tiles(img, run, header, gain_for_quality(model, 100))
        (out / "images" / f"{entry_id}.png").write_bytes(data)
        latents[entry_id] = stats16(deep)
        deep_all[entry_id], shallow_all[entry_id] = deep, shallow
        models[model.name] = model.model_id.hex()
        entries.append({"id": entry_id, "sha256": hashlib.sha256(data).hexdigest(), "name": Path(str(path)).name,
                        "modality": model.name, "width": img.width, "height": img.height,
                        "channels": channels})
        if progress:
            progress()
    if not entries:
        raise LibraryError("no images given to build a library from")
    return lib.write(out, models, entries, latents, deep_all, shallow_all)


def export_rover(src: Path, out: Path) -> str:
    """Copy a library without its images (what the rover needs). Same library ID."""
    library = lib.load(src)
    if Path(out).resolve() == Path(src).resolve():
        raise LibraryError("export-rover: output directory must differ from the library")
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        return lib.write(Path(out), library.models, list(library.entries.values()), library.latents, library.deep,
                         library.shallow, rover_export=True)
    except OSError as exc:
        raise LibraryError(f"export-rover: cannot write {out} ({exc.strerror or exc})") from None
