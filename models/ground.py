"""The shipped ground-side ref-decoder (weights tagged with the model ID they decode), run on frames
of any size.

Synthesis is tiled, reproducibly and without seams:

- RefDecoder.synthesize is cut at its pixel shuffles into stages (decoder_stages): the 1/16
  trunk, then 1/16->1/8, 1/8->1/4, 1/4->1/2 and 1/2->1. Each stage knows how far its
  convolutions reach (Stage.margin), so the context a tile needs is computed from the layer
  structure, not guessed: for the shipped decoders 33 latent px through all stages (a perturbed
  latent changes the output 32.9 latent px away, by 1e-4 of the range 13 px away), of which the
  trunk needs 21 and the upsampling stages 12 at their input, 10 px at 1/8 scale, 6 at 1/4 and 1
  at 1/2: the expensive high-resolution stages recompute little.
- Pass 1 runs the trunk on TRUNK_TILE-latent-px tiles into one 1/16 feature map; pass 2 runs the
  remaining stages on TILE-latent-px tiles of it (the 1/4 -> 1 stages on quarter tiles, which
  holds ~1/3 of the memory), cropping each tile's context after every stage to what the
  following stages still need. Every tile's output is exactly what a whole-frame pass
  computes (the convolutions' zero padding only ever reaches discarded context), up to float
  rounding (tests/test_ground.py measures it).
- The grid is fixed in latent coordinates (anchored at latent (0, 0), tile sizes are constants),
  every tile runs with one intra-op thread, and `threads` workers run whole tiles in parallel
  (torch releases the GIL). A tile's arithmetic depends only on its own crop, so the decoded pixels
  are bit-identical for any thread count and across runs.
- Output tiles are quantized and written straight into the preallocated integer image, so memory
  is one tile's activations per worker plus the 1/16 feature map, whatever the frame size.
"""
import contextlib
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open

from remac.bitstream.errors import ModelError
from remac.models.precision import autocast, decode_precision
from remac.models.archive import dequantize
from remac.models.checkpoint import WEIGHTS
from remac.models.ref_decoder import RefDecoder, decoder_layout

STORE = Path(__file__).parent / "store"         # earlier releases (bitstream.store): old streams decode
TRUNK_TILE = 128        # latent px per tile of the 1/16 trunk (context 21 px each side)
TILE = 96               # latent px per tile of the upsampling stages (1536 output px) ...
SPLIT = 2               # ... whose last stages (1/4 -> 1) run on TILE/2 sub-tiles: ~1/3 of the memory


def ground_weights_path(name: str) -> Path:
    return WEIGHTS / f"{name}_decoder.safetensors"


def conv_radius(modules) -> int:
    """How far (px at the modules' own scale) a chain of modules reaches: the sum of the radii of
    their convolutions (1x1 convolutions, attention over the reference and the reference-statistics
    modulations reach nothing)."""
    return sum(c.dilation[0] * (c.kernel_size[0] // 2) for mod in modules for c in mod.modules()
               if isinstance(c, nn.Conv2d))


@dataclass
class Stage:
    """A piece of the decoder: fn maps features at one scale to the next, `factor` times finer
    (1, or 2 across a pixel shuffle); radius_in / radius_out: the reach of its convolutions before
    the shuffle (input px) and after it (output px)."""
    fn: Callable
    factor: int
    radius_in: int
    radius_out: int = 0

    def margin(self, m_out: int) -> int:
        """Context (input px) that makes an output with m_out px of exact context exact."""
        return self.radius_in + -(-(m_out + self.radius_out) // self.factor)


def decoder_stages(d: RefDecoder, feats) -> list:
    """RefDecoder.synthesize (without its linear synth_lin path) cut at its pixel shuffles; chaining
    the stages' fns is synthesize() (tests/test_ground.py checks it on every shipped decoder)."""
    r4, r8, r16 = feats
    return [
        Stage(lambda h: d.w16(d.x16(d.s16b(d.att16(d.s16a(d.head(h)), r16)))), 1,
              conv_radius((d.head, d.s16a, d.s16b, d.x16, d.w16))),
        Stage(lambda h: d.w8(d.x8(d.s8(d.mod8(d.up8(h), r8)))), 2, conv_radius((d.up8,)), conv_radius((d.s8, d.x8, d.w8))),
        Stage(lambda h: d.w4(d.x4(d.s4(d.mod4(d.up4(h), r4)))), 2, conv_radius((d.up4,)), conv_radius((d.s4, d.x4, d.w4))),
        Stage(lambda h: d.w2(d.x2(d.s2(d.up2(h)))), 2, conv_radius((d.up2,)), conv_radius((d.s2, d.x2, d.w2))),
        Stage(d.up1, 2, conv_radius((d.up1,))),
    ]


def margins(stages) -> list:
    """Context (px at each stage's input scale) each stage's input needs for an exact output."""
    out = [0]
    for stage in reversed(stages):
        out.insert(0, stage.margin(out[0]))
    return out


def grid(h: int, w: int, tile: int) -> list:
    """The fixed tile grid over an h x w latent map: [(r0, r1, c0, c1)], anchored at (0, 0), largest
    tiles first (the workers then finish together; the order never changes a tile's pixels)."""
    boxes = [(r0, min(r0 + tile, h), c0, min(c0 + tile, w)) for r0 in range(0, h, tile) for c0 in range(0, w, tile)]
    return sorted(boxes, key=lambda b: (b[1] - b[0]) * (b[3] - b[2]), reverse=True)


def _window(box, margin, h, w, scale):
    r0, r1, c0, c1 = box
    return max(r0 * scale - margin, 0), min(r1 * scale + margin, h * scale), \
        max(c0 * scale - margin, 0), min(c1 * scale + margin, w * scale)


def run_tile(stages, need, x, box) -> torch.Tensor:
    """stages over the cell `box` (latent rows r0:r1, cols c0:c1) of x (1,C,h,w): -> the cell's
    output (1,C',s*(r1-r0),s*(c1-c0)), s the stages' total factor. `need` = margins(stages)."""
    _, _, h, w = x.shape
    scale = 1
    win = _window(box, need[0], h, w, 1)
    t = x[:, :, win[0]:win[1], win[2]:win[3]].contiguous(memory_format=torch.channels_last)   # ~1.3x faster
    for k, stage in enumerate(stages):
        t = stage.fn(t)
        scale *= stage.factor
        have = [v * stage.factor for v in win]
        win = _window(box, need[k + 1], h, w, scale)
        t = t[:, :, win[0] - have[0]:win[1] - have[0], win[2] - have[2]:win[3] - have[2]]
    return t


def run_tile_split(stages, need, x, box, split: int, sub: int, sink, workers: "Workers" = None) -> None:
    """run_tile in two steps, to hold less at once: stages[:split] over `box` (keeping the context
    the rest needs), then stages[split:] over each sub x sub latent px cell of `box`, anchored at its
    corner; sink(cell, output) for each. One step when there are no more than `split` stages.
    workers: the cells run as urgent jobs of that pool (idle workers share them), else in turn;
    each cell's numbers are the same either way."""
    if len(stages) <= split:
        sink(box, run_tile(stages, need, x, box))
        return
    mid = run_tile(stages[:split], need[:split + 1], x, box)
    s = 1
    for stage in stages[:split]:
        s *= stage.factor
    top, _, left, _ = _window(box, need[split], x.shape[2], x.shape[3], s)       # mid's corner, at scale s

    def cell_of(cell):
        local = (cell[0] * s - top, cell[1] * s - top, cell[2] * s - left, cell[3] * s - left)
        sink(cell, run_tile(stages[split:], need[split:], mid, local))
    cells = [(r0, min(r0 + sub, box[1]), c0, min(c0 + sub, box[3]))
             for r0 in range(box[0], box[1], sub) for c0 in range(box[2], box[3], sub)]
    if workers is None:
        for cell in cells:
            cell_of(cell)
    else:
        workers.map(cell_of, cells, urgent=True)


@contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to n for the block, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Workers:
    """`threads` worker threads that run synthesis jobs for one run() or several at once (a colour
    stream's three planes share one pool: ground_decoder.decode). Every job runs with one intra-op
    torch thread (set for the pool's whole life: torch's thread count is process-wide) in
    `precision` (models.precision: autocast is per thread, so each job enters it), so a job's
    numbers never depend on `threads` or on which jobs run beside it. Jobs start in the order
    given, except urgent ones (the cells of a tile already started, run_tile_split), which go first;
    a worker waiting for its urgent jobs runs urgent jobs itself, so no more tiles are under way
    than there are workers. threads <= 1: every job in the calling thread, in order, no threads.

        with Workers(2) as workers:
            workers.map(work, items, progress=update)
    """

    def __init__(self, threads: int, precision: str = "fp32"):
        self.threads, self.precision = max(1, threads), precision
        self._cv = threading.Condition()
        self._jobs, self._urgent = deque(), deque()
        self._pool, self._closed = [], False

    def __enter__(self):
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for thread in self._pool:
            thread.join()
        torch.set_num_threads(self._threads_before)

    def map(self, work, items, progress=None, urgent: bool = False) -> None:
        """work(item) for every item; returns when all are done (raising the first error, after the
        rest ran). progress(1) after each item."""
        items = list(items)
        if self.threads <= 1:
            for item in items:
                self._execute(work, item)
                progress and progress(1)
            return
        batch = _Batch(len(items), progress)
        worker = threading.current_thread() in self._pool
        with self._cv:
            (self._urgent if urgent else self._jobs).extend((work, item, batch) for item in items)
            while len(self._pool) < self.threads:
                thread = threading.Thread(target=self._serve, name=f"synthesis-{len(self._pool)}", daemon=True)
                self._pool.append(thread)
                thread.start()
            self._cv.notify_all()
            while batch.left:
                if worker and self._urgent:         # a worker waiting for its cells helps with cells
                    self._take(self._urgent.popleft())
                else:
                    self._cv.wait()
        if batch.error is not None:
            raise batch.error

    def _serve(self):
        with self._cv:
            while True:
                if self._urgent or self._jobs:
                    self._take((self._urgent or self._jobs).popleft())
                elif self._closed:
                    return
                else:
                    self._cv.wait()

    def _take(self, job):
        """Run a job, called holding the lock (released while the job runs)."""
        work, item, batch = job
        self._cv.release()
        try:
            self._execute(work, item)
        except BaseException as exc:      # noqa: BLE001 -- handed to the map() that gave the job
            batch.error = batch.error or exc
        finally:
            self._cv.acquire()
        batch.left -= 1
        batch.progress and batch.progress(1)
        self._cv.notify_all()

    def _execute(self, work, item):
        with torch.inference_mode(), autocast(self.precision):
            work(item)


@dataclass
class _Batch:
    left: int
    progress: Callable = None
    error: BaseException = None


def run_parallel(work, items, threads: int, progress=None, precision: str = "fp32") -> None:
    """work(item) for every item on `threads` workers (Workers), each torch op on one thread (so
    results do not depend on `threads`), in `precision`; progress(1) after each item."""
    with Workers(threads, precision) as workers:
        workers.map(work, items, progress)


class GroundModel:
    """RefDecoder + inverse gains (+ the preview head, when fitted) for one model ID. decoder_version
    changes with every retrain of the decoder alone; the bitstream (model ID) does not."""

    precision = "fp32"      # float arithmetic of synthesis (__init__: decode_precision())

    def __init__(self, name: str, path: Path = None, preview: Path = None):
        """path: the decoder weights (default: the shipped ones of `name`); preview: the fitted
        preview head (default: the shipped one of `name`)."""
        path = path or ground_weights_path(name)
        self.preview_path = preview or preview_weights_path(name)
        self.precision = decode_precision()     # by the CPU flags alone: same pixels on a machine
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, ValueError) as exc:
            raise ModelError(f"ground decoder weights {path} are missing or damaged ({exc})") from None
        self.name = name
        self.model_id = bytes.fromhex(meta["model_id"])
        self.decoder_version = meta["decoder_version"]
        self.channels, m = int(meta["channels"]), int(meta["m"])
        # One torch thread: converting ~3 M weights gains nothing from a second one, and on a busy
        # machine every multi-threaded op waits for a core (0.3-0.7 s of a load measured, vs 0.05 s).
        with torch_threads(1):
            tensors = dequantize(tensors)           # an archived release's int8 weights (models.archive)
            self.inv_gain = tensors.pop("inv_gain").float()
            layout = decoder_layout(tensors)
            with torch.device("meta"):              # no random initialisation: every weight is loaded below
                self.decoder = RefDecoder(self.channels, m, width=layout["decoder_width"],
                                          extra=layout["decoder_extra"], wide=layout["decoder_wide"],
                                          skip=layout["decoder_skip"], lap=layout["decoder_lap"])
            self.decoder.load_state_dict({k[len("decoder."):]: v.float().contiguous() for k, v in tensors.items()},
                                         assign=True)
        self.decoder.eval()
        self._preview = None

    def prepare(self, y_hat_g: torch.Tensor, quality: int, x_ref: torch.Tensor, consume: bool = False):
        """-> (y_hat (1,M,h,w) ungained latent, decoder_stages for reference x_ref (1,C,h',w')).
        consume: y_hat_g becomes y_hat (scaled in place: the same products, no second latent map)."""
        d = self.decoder
        with torch_threads(1), torch.inference_mode():
            gain = self.inv_gain[quality][None, :, None, None]
            y_hat = y_hat_g.mul_(gain) if consume else y_hat_g * gain
            return y_hat, decoder_stages(d, d.reference_features(x_ref))

    def trunk(self, y_hat: torch.Tensor, stages, threads: int = 1, progress=None, trunk_tile: int = None,
              workers: Workers = None) -> torch.Tensor:
        """Pass 1: the 1/16 trunk over the whole latent map, tile by tile -> (1,w16,h,w). workers: a
        pool to run the tiles on (else one of `threads` workers for this call)."""
        _, _, h, w = y_hat.shape
        out = torch.empty(1, self.decoder.head.out_channels, h, w).contiguous(memory_format=torch.channels_last)
        need = margins(stages[:1])

        def work(box):
            out[:, :, box[0]:box[1], box[2]:box[3]] = run_tile(stages[:1], need, y_hat, box)
        with self._workers(workers, threads) as pool:
            pool.map(work, grid(h, w, trunk_tile or TRUNK_TILE), progress)
        return out

    def _workers(self, workers: Workers, threads: int):
        """The caller's pool (left open), or a new one of `threads` workers for one call."""
        return contextlib.nullcontext(workers) if workers is not None else Workers(threads, self.precision)

    def run(self, y_hat_g: torch.Tensor, quality: int, x_ref: torch.Tensor, sink, threads: int = 1,
            progress=None, reduce: int = 0, tile: int = None, trunk_tile: int = None, consume: bool = False,
            workers: Workers = None) -> None:
        """Synthesize y_hat_g (1,M,h,w) (gained latent) with reference x_ref (1,C,h',w') on the fixed
        grid; sink(box, x) receives the output x (1,C,s(r1-r0),s(c1-c0)), unclamped, of each latent
        cell box = (r0, r1, c0, c1), s = 16 / 2^reduce, from up to `threads` threads at once.
        reduce 1..3: the preview head instead of the upsampling stages (preview_stage).
        progress(n): n more of the tile_count() tiles are done. tile, trunk_tile: latent px per tile of
        the two passes (default TILE, TRUNK_TILE; tests vary them: the pixels do not change).
        consume: y_hat_g may be overwritten (prepare), saving a latent map's memory. workers: a pool
        (Workers) to run on, shared with other run() calls (else one of `threads` workers); a tile's
        numbers are the same whichever runs it."""
        with self._workers(workers, threads) as pool:
            self._run(y_hat_g, quality, x_ref, sink, pool, progress, reduce, tile, trunk_tile, consume)

    def _run(self, y_hat_g, quality, x_ref, sink, workers, progress, reduce, tile, trunk_tile, consume):
        y_hat, stages = self.prepare(y_hat_g, quality, x_ref, consume)
        trunk = self.trunk(y_hat, stages, progress=progress, trunk_tile=trunk_tile, workers=workers)
        rest = [self.preview_stage(reduce)] if reduce else stages[1:]
        need = margins(rest)
        skip = getattr(self.decoder, "synth_lin", None) is not None     # a per-latent-pixel linear path

        tile = tile or TILE

        def finish(box, x):
            x = x.float()
            if skip:
                with torch.autocast("cpu", enabled=False):      # the linear path stays fp32
                    x = x + self.linear_path(y_hat, reduce, box)
            sink(box, x)
        work = lambda box: run_tile_split(rest, need, trunk, box, SPLIT, max(1, tile // 2), finish, workers)
        workers.map(work, grid(trunk.shape[2], trunk.shape[3], tile), progress)

    @staticmethod
    def tile_count(h: int, w: int, tile: int = None, trunk_tile: int = None) -> int:
        """How many progress steps run() takes on an h x w latent map."""
        return len(grid(h, w, trunk_tile or TRUNK_TILE)) + len(grid(h, w, tile or TILE))

    def synthesize(self, y_hat_g: torch.Tensor, quality: int, x_ref: torch.Tensor, threads: int = 1,
                   reduce: int = 0, tile: int = None, trunk_tile: int = None) -> torch.Tensor:
        """y_hat_g (1,M,h,w) gained latent, x_ref (1,C,h',w') -> x_hat (1,C,sh,sw) float in [0,1],
        s = 16 / 2^reduce (whole frame as float: ground_decoder.decode writes integer samples tile
        by tile instead)."""
        _, _, h, w = y_hat_g.shape
        s = 16 >> reduce
        out = torch.empty(1, self.channels, s * h, s * w)

        def sink(box, x):
            out[:, :, s * box[0]:s * box[1], s * box[2]:s * box[3]] = x.clamp(0, 1)
        self.run(y_hat_g, quality, x_ref, sink, threads, reduce=reduce, tile=tile, trunk_tile=trunk_tile)
        return out

    # ----- previews -------------------------------------------------------------------------------
    def preview_head(self):
        """(weight (C*64, w16, 3, 3), bias (C*64,)) of the fitted preview head, or None when it is
        missing or was fitted to another decoder version (training.preview refits it)."""
        if self._preview is None:
            self._preview = False
            try:
                with safe_open(str(self.preview_path), framework="pt") as f:
                    if f.metadata().get("decoder_version") == self.decoder_version:
                        self._preview = (f.get_tensor("weight").float(), f.get_tensor("bias").float())
            except (OSError, ValueError):
                pass
        return self._preview or None

    def linear_path(self, y_hat: torch.Tensor, reduce: int = 0, box=None) -> torch.Tensor:
        """The klt decoder's linear block synthesis of y_hat (1,M,h,w), box-averaged to 1/2^reduce
        linear size: the basis images averaged over 2^reduce x 2^reduce pixels, which is exactly the
        box-downsampled linear path (previews add it to the head's output; the head is fitted to
        what remains). box (r0, r1, c0, c1): only the pixels of those latent cells, (1,C,s(r1-r0),
        s(c1-c0)); a lapped synthesis (RefDecoder lap) reads one latent cell around them for that."""
        lin, lap = self.decoder.synth_lin, self.decoder.lap
        h, w = y_hat.shape[-2:]
        r0, r1, c0, c1 = box or (0, h, 0, w)
        f, r = 1 << reduce, 16 >> reduce
        m, c, k = lin.weight.shape[:3]
        weight = lin.weight.view(m, c, k // f, f, k // f, f).mean((3, 5)) if reduce else lin.weight
        pad = 1 if lap else 0                                   # latent cells read around the box
        y = F.pad(y_hat[:, :, max(r0 - pad, 0):r1 + pad, max(c0 - pad, 0):c1 + pad],
                  (pad - min(c0, pad), pad - min(w - c1, pad), pad - min(r0, pad), pad - min(h - r1, pad)))
        x = F.conv_transpose2d(y, weight, lin.bias, stride=r)  # pixel i: pixel r (r0 - pad) + i - lap / f
        top = r * pad + lap // f
        return x[:, :, top:top + r * (r1 - r0), top:top + r * (c1 - c0)]

    def preview_stage(self, reduce: int) -> Stage:
        """The 1/16 trunk features -> the image at 1/2^reduce linear size (reduce 1..3): one 3x3
        convolution to 8x8 sub-pixels per latent pixel (the head, fitted by least squares to the
        box-downsampled full decode), sub-pixels averaged 2^(reduce-1) x 2^(reduce-1) (the exact
        least-squares head for the coarser targets, least squares being linear in the target)."""
        if reduce not in (1, 2, 3):
            raise ValueError(f"reduce must be 1, 2 or 3, not {reduce}")
        head = self.preview_head()
        if head is None:
            raise ModelError(f"no preview head fitted to {self.name} decoder version {self.decoder_version}")
        weight, bias = head
        r, k = 16 >> reduce, 1 << (reduce - 1)
        weight = weight.view(self.channels, r, k, r, k, *weight.shape[1:]).mean((2, 4)).flatten(0, 2)
        bias = bias.view(self.channels, r, k, r, k).mean((2, 4)).flatten()
        return Stage(lambda h: F.pixel_shuffle(F.conv2d(h, weight, bias, padding=1), r), r, 1)


def preview_weights_path(name: str) -> Path:
    return WEIGHTS / f"{name}_preview.safetensors"


@lru_cache(maxsize=4)
def load(name: str) -> GroundModel:
    return GroundModel(name)


def for_model(model) -> GroundModel:
    """The ground model of an entropy model (bitstream.modelfile.EntropyModel): the shipped decoder,
    or the one beside it in its model-store directory (bitstream.store)."""
    stored = model.folder / "decoder.safetensors" if model.folder is not None else None
    if stored is not None and stored.is_file():
        return _load_stored(model.name, stored)
    return load(model.name)


@lru_cache(maxsize=4)
def _load_stored(name: str, path: Path) -> GroundModel:
    return GroundModel(name, path, preview=path.parent / "preview.safetensors")
