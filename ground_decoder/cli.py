"""remac-decode: the ground station's command line."""
import os
import sys
from functools import partial
from pathlib import Path

import click

from remac.bitstream import container, library as lib
from remac.rover_encoder.cli_support import STDIO, Command, given, jobs_option, plan_outputs, run_batch, version_option
from remac.bitstream.errors import RemacError
from remac.ground_decoder import GROUND_INSTALL_HINT, require_torch
from remac.ground_decoder.api import decode_file

DECODE_HELP = """Reconstruct images from .rmc FILE(s) with the ground ref-decoder.

\b
Examples:
  remac-decode navcam.rmc                    # -> navcam.dec.png beside it
  remac-decode navcam.rmc -o navcam.out.png  # choose the name (format from extension)
  remac-decode sol1234/ -o decoded/          # every .rmc under sol1234/, tree mirrored
  remac-decode - -o - < in.rmc > out.png     # stdin to stdout (PNG)
  remac-decode sol1234/ -o decoded/ -j 2 --json  # 2 processes, JSON per file
  remac-decode archive/ -o decoded/ --cluster tcp://sched:8786  # on a Dask cluster
  remac-decode archive/ -o decoded/ --cluster local -j 8        # 8 local Dask workers
  remac-decode img.q20.rmc img.r.rmc -o img.png  # a base and its refinement layer(s), as one image
  remac-decode img.r.rmc --base img.q20.rmc -o img.png            # the same
  remac-decode again.rmc --prior first.rmc -o again.png  # coded given an earlier stream
\b
The stream names its model, reference library and references; --ref-lib must be
that library (default: the shipped one, or the release's copy of it for streams
of an earlier model). Streams of the current model and of the two releases before
it decode as installed (those releases ship in the model store, models/store);
an older release's stream fails with a message naming the command that brings
it back, run in a clone of the repository with its history:
bash scripts/restore_release.sh MODEL_ID. --models DIR adds stores of your own.
Damaged tiles are filled flat and reported on stderr; --strict refuses such a
stream instead. The format follows the
output's extension (PNG for '-' and unknown ones); lossy formats (JPEG, WebP)
are refused unless --force. 10..14-bit streams decode to 16-bit PNGs holding
0..2^D-1 with an sBIT chunk; metadata carried in the stream is restored.
A refinement layer (remac-encode --refine) decodes only with the streams below
it: list them first (BASE LAYER1 LAYER2 ... -o OUT) or give them with --base; a
wrong or missing base is an error naming the stream ID it needs. A stream coded
given an earlier one (remac-encode --prior) decodes only with it: --prior RMC
(repeatable; streams are matched by ID, so extra ones do no harm).
\b
Exit status: 0 all decoded cleanly; 1 some input failed (the rest still
decoded); 2 usage; 3 all written, but some stream was damaged (lost tiles
filled, or damage outside the tiles reported on stderr).
"""


def layer_chain(files) -> bool:
    """FILE... is a base stream followed by its refinement layers in order (each one's header names
    the layer before it; bitstream.layers checks the IDs): decode them as one image."""
    if len(files) < 2 or STDIO in files or not all(os.path.isfile(f) and f.lower().endswith(".rmc") for f in files):
        return False
    try:
        layers = [container.read(Path(f).read_bytes()).header.layer for f in files]
    except RemacError:
        return False
    return layers == list(range(len(files)))


def _decoder_version(name: str) -> str:
    try:
        from remac.models import ground
    except ImportError:
        return f", no ground decoder (needs PyTorch: {GROUND_INSTALL_HINT})"
    return f", decoder version {ground.load(name).decoder_version}"


@click.command(cls=Command, help=DECODE_HELP)
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image, directory, or - for stdout (PNG).")
@click.option("--ref-lib", type=click.Path(), help="Reference library directory [default: the shipped one].")
@click.option("--models", "models", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A model store (a directory of released models, repeatable) for streams of models this "
                   "installation does not ship; the shipped store (the two releases before the current "
                   "model) is always searched.")
@click.option("--strict", is_flag=True, help="Refuse damaged streams instead of concealing lost tiles.")
@click.option("--force", is_flag=True, help="Write lossy output formats (JPEG, WebP) too, at quality 95.")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Synthesis workers (the decoded pixels are the same for any number; with -j: 1 unless given).")
@click.option("--reduce", type=click.IntRange(0, 3), default=0, show_default=True,
              help="Preview at 1/2, 1/4 or 1/8 linear size (1, 2, 3), in a fraction of the time.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input on stdout.")
@click.option("--quiet", is_flag=True, help="Only errors and warnings.")
@click.option("--base", "bases", multiple=True, type=click.Path(dir_okay=False, exists=True), metavar="RMC",
              help="FILE is a refinement layer: RMC is the stream below it. Repeat for a chain, base first.")
@click.option("--prior", "priors", multiple=True, type=click.Path(dir_okay=False, exists=True), metavar="RMC",
              help="A stream FILE(s) may be coded given (remac-encode --prior), matched by its ID. Repeatable.")
@jobs_option("files")
@click.option("--cluster", metavar="ADDRESS",
              help="Decode on a Dask cluster, one task per stream: the scheduler at ADDRESS (tcp://host:8786), "
                   "or 'local' for a local cluster of -j N single-threaded workers [default N: one per CPU]. "
                   "Workers must see the same paths.")
@version_option("remac-decode", _decoder_version)
def decode_main(files, output, ref_lib, models, strict, force, threads, reduce, as_json, quiet, bases, priors,
                workers, cluster):
    require_torch("remac-decode")
    if not bases and layer_chain(files):
        files, bases = files[-1:], files[:-1]
    if bases and (len(files) != 1 or cluster is not None):
        raise click.UsageError("--base decodes one refinement stream (FILE), not a batch or a cluster job")
    if cluster is not None and (STDIO in files or output == STDIO):
        raise click.UsageError("--cluster reads and writes files, not stdin or stdout")
    jobs = plan_outputs("remac-decode", list(files), output, ".dec.png", as_json,
                        lambda p: p.suffix.lower() == ".rmc", ".rmc files")
    library = None
    if ref_lib is not None:
        try:
            library = lib.load(ref_lib)
        except RemacError as exc:
            click.echo(f"remac-decode: error: {exc}", err=True)
            sys.exit(1)
    alone = workers == 1 and cluster is None
    progress = sys.stderr.isatty() and not (quiet or as_json) and alone     # a tile bar for large frames
    threads = threads if alone or given("threads") else 1                   # -j N, --cluster: one thread per worker
    work = partial(decode_file, library=library, strict=strict, threads=threads, force=force, reduce=reduce,
                   progress=progress, models=models, bases=bases, priors=priors)
    if cluster is None:
        run_batch("remac-decode", jobs, work, as_json, quiet or output == STDIO, workers)
        return
    from remac.ground_decoder.cluster import cluster_runner
    try:
        with cluster_runner(cluster, workers if given("workers") else None) as runner:
            run_batch("remac-decode", jobs, work, as_json, quiet, runner=runner)
    except RemacError as exc:
        click.echo(f"remac-decode: error: {exc}", err=True)
        sys.exit(1)
