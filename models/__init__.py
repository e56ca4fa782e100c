"""PyTorch side of REMAC: network definitions, training, export. Ground and training only."""
