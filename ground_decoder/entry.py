"""remac-decode's entry point: numpy's BLAS on one thread, and PyTorch's large tensors on
transparent huge pages, both set in the environment before anything imports numpy or torch.

The entropy decoder runs the integer hyper-synthesis as small float GEMMs in numpy, one tile after
another; synthesis (PyTorch) runs its --threads workers with one intra-op thread each. OpenBLAS
sizes its pool when numpy is imported, one thread per core by default, and a multi-threaded GEMM
of this size waits for every core it asked for: on the loaded 2-core machine a 1-MP stream's
entropy decoding took 0.35-0.44 s with the default pool and 0.16-0.20 s with one thread (the same
integers: the GEMMs are exact in any summation order, bitstream.intnet). OPENBLAS_NUM_THREADS
already in the environment is kept. Importing remac.ground_decoder.cli directly (tests, library
use) leaves the process's BLAS as it was.

THP_MEM_ALLOC_ENABLE=1 has PyTorch's CPU allocator align tensors of 2 MiB and more to 2 MiB and
madvise them as huge pages. Synthesis maps each large block afresh (decode.large_blocks_to_the_os,
which keeps peak memory down), and faulting those in 4-KiB pages cost a 1-MP decode ~7 % of its
wall time; with huge pages the whole command measured as fast as without the fixed threshold
(same pixels: only where the memory comes from changes). A value already set is kept.
"""
import os


def set_environment() -> None:
    """The settings above, where the environment has none; call before numpy and torch are imported."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def decode_main():
    set_environment()
    from remac.ground_decoder.cli import decode_main as main
    main(prog_name="remac-decode")
