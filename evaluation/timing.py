"""Wall-clock and memory figures of the real code paths (medians over repeats)."""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from remac.rover_encoder import analysis
from remac.bitstream import modelfile


def onnx_encode_ms_per_mp(name: str, size=(1024, 1024), threads=1, repeats=5, precision="float") -> float:
    """Analysis transform alone (the rover's network work) in onnxruntime; precision float or int8."""
    model = modelfile.load(name)
    run = analysis.Analyzer(model, threads, precision=precision)
    x = np.random.default_rng(0).random((model.channels, *size), dtype=np.float32)
    gain = analysis.gain_for_quality(model, 7500)
    run(x, gain)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(x, gain)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times) / (size[0] * size[1] / 1e6)


def onnx_ms_per_mp_of(onnx_bytes: bytes, channels: int, size=(1024, 1024), threads=1, repeats=5) -> float:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, channels, *size), dtype=np.float32)
    feeds = {sess.get_inputs()[0].name: x}
    sess.run(None, feeds)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times) / (size[0] * size[1] / 1e6)


def _test_image(path, side, channels):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (side // 8, side // 8) + ((3,) if channels == 3 else ()), dtype=np.uint8)
    Image.fromarray(base).resize((side, side), Image.BICUBIC).save(path)


def cli_peak_rss_mib(side: int, channels: int = 1, threads: int = 1) -> dict:
    """Run `remac-encode` on a side x side image in a subprocess; -> wall s, peak RSS MiB."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.png")
        _test_image(src, side, channels)
        code = ("import resource, sys; from remac.rover_encoder.cli import encode_main\n"
                "try:\n    encode_main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", code, src, "-o", os.path.join(tmp, "o.rmc"), "--quiet",
                            "--threads", str(threads)], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
    return {"side": side, "wall_s": round(wall, 2), "peak_rss_mib": round(int(p.stdout.split()[-1]) / 1024, 1)}


def decode_ms_per_mp(data: bytes, library, pixels: int, threads=2, repeats=3) -> float:
    from remac.ground_decoder.decode import decode
    decode(data, library, threads=threads)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        decode(data, library, threads=threads)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times) / (pixels / 1e6)
