"""Training tooling for the networks in models/: data, training, calibration, int8 quantization,
export to the codec's artifacts, checkpoint comparison, ablations and training plots."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]          # the repository
WEIGHTS = ROOT / "models" / "weights"              # shipped checkpoints
CONFIGS = Path(__file__).resolve().parent / "configs"
LOGS = Path(__file__).resolve().parent / "logs"
DATA = ROOT.parent / "shared" / "data"              # ../shared/data (not in a fresh clone)
CKPT = ROOT / ".ckpt"                               # optimizer state: never committed
