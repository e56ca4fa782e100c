"""remac-encode's and remac-lib's entry points: numpy's BLAS gets --threads threads, not one per core.

OpenBLAS sizes its thread pool when numpy is first imported, from OPENBLAS_NUM_THREADS (or
OMP_NUM_THREADS), so the value has to be in the environment before anything imports numpy: these
entry points read --threads from the command line first (default 1, as the option's), set the
variables, then import the command. Without it the integer network's GEMMs ran on every core even
with --threads 1: a 96x2304x1024 sgemm took 84 ms with the default pool vs 10 ms with one thread on
a loaded 2-core machine. Worker processes (-j N) inherit the setting. Importing
remac.rover_encoder.cli directly (tests, library use) leaves the process's BLAS as it was.
"""
import os
import sys

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_option(argv: list) -> int:
    """The value of the last `--threads N` / `--threads=N` in argv, 1 if none or not a positive
    integer (click reports a bad value itself)."""
    threads = 1
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--threads" and i + 1 < len(argv) else arg.removeprefix("--threads=")
        if value.isdigit() and int(value) > 0:
            threads = int(value)
    return threads


def limit_blas_threads(argv: list) -> None:
    """Set every BLAS_THREAD_VARIABLES to threads_option(argv); call before numpy is imported."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = str(threads_option(argv))


def encode_main():
    limit_blas_threads(sys.argv[1:])
    from remac.rover_encoder.cli import encode_main as main
    main(prog_name="remac-encode")


def lib_main():
    limit_blas_threads(sys.argv[1:])
    from remac.rover_encoder.cli import lib_main as main
    main(prog_name="remac-lib")
