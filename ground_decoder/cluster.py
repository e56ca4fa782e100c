"""remac-decode --cluster: re-decode an archive on a Dask (distributed) cluster, one task per stream.

    remac-decode --cluster tcp://scheduler:8786 archive/ -o decoded/   # an existing cluster
    remac-decode --cluster local -j 8 archive/ -o decoded/              # a LocalCluster, 8 workers x 1 thread

Each task is rover_encoder.cli_support.timed(work, input, output), the call -j runs in its process
pool, on absolute paths (workers must see the same files at the same paths). decode_file writes
its output atomically (a temporary name in the output directory, fsync, os.replace), so a worker
that dies mid-task never leaves a partial output; the scheduler re-runs a task whose worker died
(on another worker, up to distributed.scheduler.allowed-failures deaths, then the file fails with
KilledWorker) and `retries=` re-runs one that raised. Decoding is deterministic (models/ground.py:
the same pixels for any thread count or machine run), so a re-run writes the same bytes. The
client gathers the results in input order and run_batch reports them as for -j (JSON lines,
summary, exit codes); temporary files of dead workers are removed when the batch ends.

Why Dask and not Ray: the work is one independent task per file on a shared file system, which is
what distributed's futures do with nothing more (submit, retries=, rescheduling on worker death);
it is pure-Python wheels, runs on the schedulers archive centres already have (dask-jobqueue for
SLURM/PBS, dask-kubernetes) or as a bare `dask scheduler` / `dask worker` pair, and a client needs
only an address. Ray would add a large native runtime (raylet, object store, GCS) that this job
does not use.
"""
import os
import uuid
from contextlib import contextmanager

from remac.rover_encoder.cli_support import remove_temp_files, timed
from remac.bitstream.errors import RemacError

LOCAL = "local"
RETRIES = 2                     # re-runs of a task that raised (worker deaths are re-run by the scheduler)
INSTALL_HINT = "pip install 'remac[cluster]'"


@contextmanager
def cluster_runner(address: str, workers: int = None):
    """-> runner(work, jobs) for run_batch, on the scheduler at `address`, or with address 'local'
    on a LocalCluster of `workers` single-threaded worker processes (default: one per CPU), closed
    on exit. Raises RemacError (one line) if Dask is missing or the scheduler cannot be reached."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RemacError(f"--cluster needs Dask: {INSTALL_HINT}") from None
    cluster = None
    try:
        if address == LOCAL:
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(address)        # waits distributed.comm.timeouts.connect (30 s) for it
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise RemacError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    try:
        yield lambda work, jobs: cluster_results(client, work, jobs)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def cluster_results(client, work, jobs):
    """timed(work, inp, out) of every job as a task on `client`'s cluster, yielded in input order
    with the paths named as given. A task that failed on the cluster (its workers kept dying, the
    connection was lost) is a failed file. Leftover temporary outputs are removed at the end."""
    batch = uuid.uuid4().hex[:12]
    futures = [None if isinstance(out, RemacError) else
               client.submit(timed, work, os.path.abspath(inp), os.path.abspath(out), key=f"remac-{batch}-{i}",
                             retries=RETRIES, pure=False)
               for i, (inp, out) in enumerate(jobs)]
    try:
        for (inp, out), future in zip(jobs, futures):
            if future is None:
                yield timed(work, inp, out)                 # the planned error: reported, not sent
                continue
            try:
                info, error, seconds = future.result()
            except Exception as exc:                        # noqa: BLE001  (KilledWorker, CancelledError, comm errors)
                yield None, f"{inp}: not decoded on the cluster ({type(exc).__name__}: {exc})", 0.0
                continue
            named = as_given({os.path.abspath(out): out, os.path.abspath(inp): inp})
            yield named(info), named(error), seconds
    finally:
        client.cancel([f for f in futures if f is not None])
        remove_temp_files(jobs)


def as_given(names: dict):
    """-> f(value): value (str, or lists/dicts of them) with each absolute path replaced by the
    name it was given as, longest first."""
    pairs = sorted(((a, g) for a, g in names.items() if a != g), key=lambda p: -len(p[0]))

    def named(value):
        if isinstance(value, str):
            for absolute, given in pairs:
                value = value.replace(absolute, given)
            return value
        if isinstance(value, list):
            return [named(v) for v in value]
        if isinstance(value, dict):
            return {k: named(v) for k, v in value.items()}
        return value
    return named
