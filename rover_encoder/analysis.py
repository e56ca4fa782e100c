"""The rover's analysis transform (g_a + h_a, float or int8 ONNX) in onnxruntime, and the descriptors it yields.

    x (C,h,w) in [0,1] --edge-pad to multiples of 64--> g_a --> y (M,ph/16,pw/16) ungained,
                                                                shallow (2N,) texture statistics
                                            y * gain --> h_a --> z (Z,ph/64,pw/64)

g_a and h_a run as two sessions cut from the one shipped graph (rover_encoder.onnx_graph): y does
not depend on the quality, so rate control runs g_a once and h_a once per quality it tries.
"""
import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from remac.bitstream import modelfile, spec
from remac.bitstream.errors import ModelError
from remac.bitstream.modelfile import EntropyModel
from remac.rover_encoder import onnx_graph

ASSETS = Path(__file__).parent / "assets"
ENCODER_FILES = {"float": "encoder.onnx", "int8": "encoder.int8.onnx"}
# int8 where its BD-rate cost vs float measured <= 1% (docs/BENCHMARKS.md, 8 images): klt grey -1.07%
DEFAULT_PRECISION = {"grey": "int8"}


def pad_to_64(x: np.ndarray) -> np.ndarray:
    """(C,h,w) -> (C, ceil64(h), ceil64(w)), edge-replicated."""
    _, h, w = x.shape
    return np.pad(x, ((0, 0), (0, -h % 64), (0, -w % 64)), mode="edge")


def default_precision(name: str, model: EntropyModel = None) -> str:
    """The model's DEFAULT_PRECISION where it ships that analysis, else float (model: a model
    directory's, else the shipped `name`)."""
    wanted = DEFAULT_PRECISION.get(name, "float")
    return wanted if (model or modelfile.load(name)).encoder_sha256.get(wanted) else "float"


def shipped(model: EntropyModel) -> bool:
    return model.folder is None or Path(model.folder).parent == modelfile.ASSETS


class Analyzer:
    """precision: "float" (encoder.onnx) or "int8" (encoder.int8.onnx, static QDQ quantization)."""

    def __init__(self, model: EntropyModel, threads: int = 1, assets: Path = ASSETS, precision: str = "float"):
        """The encoder files come from assets/<name>/ for a shipped model, else from the model's own
        directory (a rover model directory: model.json, entropy.npz, encoder*.onnx)."""
        folder = Path(assets) / model.name if shipped(model) else Path(model.folder)
        path = folder / ENCODER_FILES[precision]
        if not model.encoder_sha256.get(precision):
            raise ModelError(f"model '{model.name}' ships no {precision} rover encoder")
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"rover encoder {path} is missing ({exc.strerror})") from None
        if hashlib.sha256(blob).hexdigest() != model.encoder_sha256[precision]:
            raise ModelError(f"rover encoder {path} does not belong to model {model.model_id.hex()}")
        import onnxruntime as ort     # here: -V / --help never load it, and the CLIs check their
        # inputs and outputs before it loads
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # memory patterns pre-plan one block per input shape, kept in the arena: tiles of several
        # shapes (edge tiles, context windows) then cost ~90 MiB more peak RSS on a 4-Mpixel frame
        opts.enable_mem_pattern = False
        session = lambda graph: ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        g_a, h_a = onnx_graph.cut(blob, [(["x"], ["y", "shallow"]), (["y", "gain"], ["z"])])
        self.g_a, self.h_a = session(g_a), session(h_a)
        self.model = model

    def analyse(self, x: np.ndarray):
        """x (C,h,w) float32 -> y (M,ph/16,pw/16) ungained, shallow (2N,)."""
        y, shallow = self.g_a.run(None, {"x": pad_to_64(x)[None].astype(np.float32, copy=False)})
        return y[0], shallow[0]

    def hyper(self, y: np.ndarray, gain: np.ndarray) -> np.ndarray:
        """y (M,h,w) ungained (as analyse returns it), gain (M,) float32 -> z (Z,h/4,w/4)."""
        feeds = {"y": y[None], "gain": gain.reshape(1, -1, 1, 1).astype(np.float32)}
        return self.h_a.run(None, feeds)[0][0]

    def __call__(self, x: np.ndarray, gain: np.ndarray):
        """x (C,h,w) float32, gain (M,) float32 -> y, z (unbatched), shallow (2N,): the whole graph."""
        y, shallow = self.analyse(x)
        return y, self.hyper(y, gain), shallow


@lru_cache(maxsize=8)
def analyzer(name: str, threads: int = 1, precision: str = None) -> Analyzer:
    """Cached session for shipped model `name` ('grey'); precision None = the default."""
    return Analyzer(modelfile.load(name), threads, precision=precision or default_precision(name))


def analyzer_for(model: EntropyModel, threads: int = 1, precision: str = None) -> Analyzer:
    """Cached session for a shipped model or a model directory's."""
    if shipped(model):
        return analyzer(model.name, threads, precision)
    return _dir_analyzer(Path(model.folder), threads, precision or default_precision(model.name, model))


@lru_cache(maxsize=4)
def _dir_analyzer(folder: Path, threads: int, precision: str) -> Analyzer:
    return Analyzer(modelfile.load_dir(folder), threads, precision=precision)


def rover_model(channels: int, model=None) -> EntropyModel:
    """The model to encode `channels`-channel images with: the shipped one, or `model` (a model
    directory, `remac-encode --model DIR`), which must code that many channels (channels None:
    `model` whatever it codes)."""
    if model is None:
        return modelfile.for_channels(channels)
    model = model if isinstance(model, EntropyModel) else modelfile.load_dir(Path(model))
    if channels is not None and model.channels != channels:
        raise ModelError(f"model {model.model_id.hex()} in {model.folder} codes {model.channels}-channel images, "
                         f"not {channels}")
    return model


def deep_descriptor(y: np.ndarray) -> np.ndarray:
    """(M,h,w) ungained latent -> (2M,) channel means and mean absolute deviations."""
    mean = y.mean(axis=(1, 2))
    return np.concatenate([mean, np.abs(y - mean[:, None, None]).mean(axis=(1, 2))]).astype(np.float32)


def stats16(deep: np.ndarray) -> np.ndarray:
    """(2M,) float descriptor -> (2, M) int64 library statistics in units 1/16."""
    return np.floor(deep.astype(np.float64) * 16 + 0.5).astype(np.int64).reshape(2, -1)


def gain_for_quality(model: EntropyModel, q100: int) -> np.ndarray:
    """(M,) float32 channel gains the rover applies at quality q100 (hundredths, 0..10000)."""
    gain_int = spec.gain_int_at(model.gain_int, q100)
    return (gain_int / 2 ** spec.GAIN_FRAC_BITS).astype(np.float32)
