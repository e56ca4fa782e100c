"""Rover side of REMAC: image -> .rmc with onnxruntime + constriction. Never imports torch."""
