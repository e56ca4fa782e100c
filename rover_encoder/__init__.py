"""Rover side of REMAC: image -> .rmc with onnxruntime + constriction. Never imports torch."""


def __getattr__(name):
    """encode_image(array) -> bytes and encode_file(path, out) -> dict (rover_encoder.api), imported
    on first use (`rover_encoder.encode` is the codec's module, hence encode_image)."""
    if name in ("encode_image", "encode_file"):
        from remac.rover_encoder import api
        return api.encode if name == "encode_image" else api.encode_file
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
