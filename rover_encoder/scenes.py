"""The rover's store of recent streams, for re-imaged scenes (remac-encode --store DIR): every frame
coded on its own (grey, or colour as luma + chroma planes) is kept with its thumbnail, and the next
frame is tested against those of its kind; where it repeats an earlier pointing it is coded given
that stream (rover_encoder.prior).

    DIR/index.json          [{"id", "bytes", "rows", "cols", "planes", "transform"}, ...] oldest first
    DIR/<id>.rmc            the stream as sent (the ground holds it too: it is the prior's ID)
    DIR/<id>.npy            its thumbnail: channel 0 of the coded (luma) latent, 16 * y_hat (the block
                            means of its canvas, int32, ceil(H/16) x ceil(W/16): 4 bytes per 256 px)

Only streams coded on their own are kept (key frames): a frame coded given one is not, so every
stored stream can be re-read alone and a run of re-imaged frames (a movie) is coded given its first
frame until that leaves the store. Bound: the files' bytes together stay within `limit`
(--store-bytes, default STORE_BYTES); the oldest streams go first (the newest always stays). A
1024x1024 frame at quality 50 keeps ~60 kB of stream + 16 kB of thumbnail.

The repeat test reads only the thumbnails: estimate_shift of the new frame's pixels against each one
(newest first), the best correlation wins; it repeats at prior.REPEAT. Only the winner's stream (and
any priors of it) is entropy-decoded, to code the frame given it.
"""
import io
import json
from pathlib import Path

import numpy as np

from remac.bitstream import container, refine
from remac.bitstream.errors import RemacError
from remac.rover_encoder import encode as codec
from remac.rover_encoder.cli_support import atomic_write
from remac.rover_encoder.imageio import SourceImage
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.prepared import EncodeResult

STORE_BYTES = 8 << 20       # default bound of the store, bytes
CANDIDATES = 8              # stored streams tested per frame, newest first


class SceneStore:
    def __init__(self, folder, limit: int = STORE_BYTES):
        self.folder = Path(folder)
        self.limit = limit
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            index = self.folder / "index.json"
            entries = json.loads(index.read_text()) if index.exists() else []
        except (OSError, ValueError) as exc:
            raise RemacError(f"{folder}: cannot use as a scene store ({exc})") from None
        # an entry whose files went missing (a store cut short between its writes) is forgotten
        fields = {"id": str, "bytes": int, "rows": int, "cols": int}
        if not isinstance(entries, list) or not all(isinstance(e, dict) and all(isinstance(e.get(k), t)
                                                                              for k, t in fields.items())
                                                    for e in entries):
            raise RemacError(f"{folder}/index.json: not a scene store index (a list of {{id, bytes, rows, cols}})")
        self.entries = [e for e in entries if all(f.is_file() for f in self._files(e))]

    def _files(self, entry) -> list:
        return [self.folder / f"{entry['id']}.rmc", self.folder / f"{entry['id']}.npy"]

    def newest(self) -> list:
        return self.entries[::-1]

    def stream(self, entry) -> bytes:
        return self._read(entry, lambda f: f[0].read_bytes())

    def thumbnail(self, entry) -> np.ndarray:
        return self._read(entry, lambda f: np.load(f[1], allow_pickle=False))

    def _read(self, entry, how):
        try:
            return how(self._files(entry))
        except (OSError, ValueError) as exc:
            raise RemacError(f"{self.folder}: stored stream {entry['id']} is unreadable ({exc})") from None

    def add(self, result: EncodeResult) -> None:
        """Keep a grey stream just coded on its own (result.tiles must be kept: its latents give the
        thumbnail), then evict the oldest until the store fits its bound."""
        h = result.header
        if (h.coded_channels != 1 and not h.planes) or h.layer or h.roi_levels or h.has_prior or result.tiles is None:
            return
        sid = refine.stream_id(result.data).hex()
        luma = h.plane(0) if h.planes else h
        thumb = np.zeros((-(-luma.height // 16), -(-luma.width // 16)), np.int32)
        t16h, t16w = luma.tile_height // 16, luma.tile_width // 16
        for index, (_, _, _, y) in enumerate(result.tiles[:luma.tile_count]):
            ty, tx = divmod(index, luma.tiles_x)
            part = np.round(16 * y[0].astype(np.float64)).astype(np.int32)
            r0, c0 = ty * t16h, tx * t16w
            rows, cols = min(part.shape[0], thumb.shape[0] - r0), min(part.shape[1], thumb.shape[1] - c0)
            thumb[r0:r0 + rows, c0:c0 + cols] = part[:rows, :cols]
        atomic_write(str(self.folder / f"{sid}.rmc"), result.data)
        buf = io.BytesIO()
        np.save(buf, thumb)
        atomic_write(str(self.folder / f"{sid}.npy"), buf.getvalue())
        self.entries = [e for e in self.entries if e["id"] != sid]
        self.entries.append({"id": sid, "bytes": len(result.data) + (self.folder / f"{sid}.npy").stat().st_size,
                             "rows": int(thumb.shape[0]), "cols": int(thumb.shape[1]), "planes": h.planes,
                             "transform": h.colour_transform.hex()})
        evicted = []
        while len(self.entries) > 1 and sum(e["bytes"] for e in self.entries) > self.limit:
            evicted.append(self.entries.pop(0))
        # the index first, then the evicted files: a cut in between leaves only unnamed files
        atomic_write(str(self.folder / "index.json"), json.dumps(self.entries, indent=1).encode())
        for f in (f for e in evicted for f in self._files(e)):
            f.unlink(missing_ok=True)

    @property
    def size(self) -> int:
        return sum(e["bytes"] for e in self.entries)


def encode_with_store(img: SourceImage, opts: EncodeOptions, folder, limit: int = STORE_BYTES) -> EncodeResult:
    """Code a frame with the scene store at `folder`: given the stored stream it repeats (if any and
    if that is smaller; rover_encoder.prior), else on its own; then keep it in the store."""
    from remac.rover_encoder.prior import encode_with_prior, estimate_shift, luma_of
    store = SceneStore(folder, limit)
    result, best, lumas = None, None, {}
    if not opts.roi and opts.budget(img.width, img.height) is None:
        for entry in [e for e in store.newest() if e.get("planes", 0) == (img.channels == 3)][:CANDIDATES]:
            code = entry.get("transform", "")
            if code not in lumas:           # a colour frame's luma under the stored stream's transform
                lumas[code] = luma_of(img, bytes.fromhex(code))
            match = estimate_shift(lumas[code], store.thumbnail(entry).astype(np.float64))
            if best is None or match.detail > best[1].detail:
                best = (entry, match)
    if best is not None and best[1].repeats:        # coded alone where that is smaller: then kept
        result = encode_with_prior(img, [store.stream(best[0])], opts, match=best[1], keep_tiles=True)
    else:
        result = codec.encode(img, opts, keep_tiles=True)
    store.add(result)
    return result
