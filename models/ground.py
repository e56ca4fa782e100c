"""Loading the shipped ground-side ref-decoder (weights tagged with the model ID they decode)."""
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import safe_open

from bitstream.errors import ModelError
from models.remac import RefDecoder, decoder_layout

WEIGHTS = Path(__file__).parent / "weights"


def ground_weights_path(name: str) -> Path:
    return WEIGHTS / f"{name}_decoder.safetensors"


class GroundModel:
    """RefDecoder + inverse gains for one model ID. decoder_version changes with every retrain of
    the decoder alone; the bitstream (model ID) does not."""

    def __init__(self, name: str, path: Path = None):
        path = path or ground_weights_path(name)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, ValueError) as exc:
            raise ModelError(f"ground decoder weights {path} are missing or damaged ({exc})") from None
        self.model_id = bytes.fromhex(meta["model_id"])
        self.decoder_version = meta["decoder_version"]
        self.channels, m = int(meta["channels"]), int(meta["m"])
        self.inv_gain = tensors.pop("inv_gain").float()
        layout = decoder_layout(tensors)
        self.decoder = RefDecoder(self.channels, m, extra=layout["decoder_extra"], wide=layout["decoder_wide"])
        self.decoder.load_state_dict({k[len("decoder."):]: v.float() for k, v in tensors.items()})
        self.decoder.eval()

    @torch.no_grad()
    def synthesize(self, y_hat_g: torch.Tensor, quality: int, x_ref: torch.Tensor, chunk: int = 48,
                   halo: int = 24) -> torch.Tensor:
        """y_hat_g (1,M,h,w) gained latent, x_ref (1,C,h',w') -> x_hat (1,C,16h,16w) clamped to [0,1].

        Latents larger than (chunk + 2*halo)^2 are synthesized in chunks, each with `halo` latent
        pixels of context on every side (the base decoder's receptive field is ~22 latent pixels),
        so memory stays bounded for any frame size and chunk seams match whole-frame synthesis
        closely (tests/test_models.py measures it).
        """
        y_hat = y_hat_g * self.inv_gain[quality][None, :, None, None]
        feats = self.decoder.reference_features(x_ref)
        _, _, h, w = y_hat.shape
        if h * w <= (chunk + 2 * halo) ** 2:
            return self.decoder.synthesize(y_hat, feats).clamp(0, 1)
        out = torch.empty(1, self.channels, 16 * h, 16 * w)
        for r0 in range(0, h, chunk):
            for c0 in range(0, w, chunk):
                r1, c1 = min(r0 + chunk, h), min(c0 + chunk, w)
                a0, b0, a1, b1 = max(r0 - halo, 0), max(c0 - halo, 0), min(r1 + halo, h), min(c1 + halo, w)
                piece = self.decoder.synthesize(y_hat[:, :, a0:a1, b0:b1], feats)
                out[:, :, 16 * r0:16 * r1, 16 * c0:16 * c1] = \
                    piece[:, :, 16 * (r0 - a0):16 * (r1 - a0), 16 * (c0 - b0):16 * (c1 - b0)]
        return out.clamp(0, 1)


@lru_cache(maxsize=4)
def load(name: str) -> GroundModel:
    return GroundModel(name)
