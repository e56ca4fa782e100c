"""Ground side of REMAC: .rmc -> image with the PyTorch ref-decoder."""
