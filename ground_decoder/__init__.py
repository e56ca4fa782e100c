"""Ground side of REMAC: .rmc -> image with the PyTorch ref-decoder."""

GROUND_INSTALL_HINT = "pip install 'remac[ground]'"


def require_torch(prog: str) -> None:
    """Exit 1 with one line where PyTorch is not installed (a rover-only install). Only looks: torch is
    imported when a stream is decoded, after the inputs and outputs were checked."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        import click
        click.echo(f"{prog}: error: the ground decoder needs PyTorch: {GROUND_INSTALL_HINT}", err=True)
        raise SystemExit(1) from None


def __getattr__(name):
    """decode_image(data) -> array and decode_file(path, out) -> dict (ground_decoder.api), imported
    on first use, so that `import ground_decoder` needs no PyTorch."""
    if name in ("decode_image", "decode_file"):
        from remac.ground_decoder import api
        return api.decode if name == "decode_image" else api.decode_file
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
