"""Evaluation tools: classical-codec baselines and rate-distortion benchmarking."""


def main():
    """remac-eval's entry point: one line, not a traceback, where PyTorch is missing."""
    from remac.ground_decoder import require_torch
    require_torch("remac-eval")
    from evaluation.cli import main as cli_main
    cli_main(prog_name="remac-eval")
