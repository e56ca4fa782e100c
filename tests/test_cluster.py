"""remac-decode --cluster: one Dask task per stream (ground_decoder/cluster.py). Each test starts a
2-worker local cluster; its workers import PyTorch, so a test takes ~10-20 s on a busy machine."""
import json
import os
import sys
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from remac.rover_encoder.cli_support import run_batch
from remac.ground_decoder.api import decode_file
from remac.ground_decoder.cli import decode_main
from tests.conftest import COLOUR, GREY

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

NAMES = ["a", "b", "c", "d"]


def invoke(args):
    return CliRunner().invoke(decode_main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """Four small streams (grey and colour crops of tests/data) and their plain remac-decode outputs."""
    from remac import rover_encoder
    tmp = tmp_path_factory.mktemp("cluster")
    (tmp / "enc").mkdir()
    crops = [(GREY, (0, 0, 64, 64)), (GREY, (64, 64, 160, 128)), (COLOUR, (0, 0, 64, 64)), (COLOUR, (100, 50, 196, 114))]
    for name, (path, box) in zip(NAMES, crops):
        data = rover_encoder.encode_image(__import__("numpy").asarray(Image.open(path).crop(box)), quality=50)
        (tmp / "enc" / f"{name}.rmc").write_bytes(data)
    r = invoke([tmp / "enc", "-o", str(tmp / "plain") + "/", "--quiet"])
    assert r.exit_code == 0, r.output
    return tmp, {n: (tmp / "plain" / f"{n}.dec.png").read_bytes() for n in NAMES}


def outputs(folder: Path) -> dict:
    """Every file in `folder`, hidden (temporary) ones included."""
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_cli_local_cluster_writes_what_a_plain_decode_writes(streams):
    tmp, plain = streams
    out = tmp / "cluster"
    r = invoke([tmp / "enc", "-o", str(out) + "/", "--cluster", "local", "-j", 2, "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(Path(d["file"]).name, d["status"]) for d in lines] == [(f"{n}.rmc", "ok") for n in NAMES]
    # paths are reported as given, although the workers were sent absolute ones
    assert lines[0]["output"] == str(out / "a.dec.png") and lines[0]["summary"] == f"{tmp / 'enc' / 'a.rmc'} -> {out / 'a.dec.png'}"
    assert "remac-decode: all 4 files done" in r.stderr
    assert outputs(out) == {f"{n}.dec.png": plain[n] for n in NAMES}      # byte-identical, nothing else


def test_cluster_usage_errors(streams):
    tmp, _ = streams
    assert invoke([tmp / "enc" / "a.rmc", "-o", "-", "--cluster", "local"]).exit_code == 2
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        r = invoke([tmp / "enc", "-o", str(tmp / "nowhere") + "/", "--cluster", "tcp://127.0.0.1:9"])
    assert r.exit_code == 1 and r.stderr.startswith("remac-decode: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")


def die_once(inp, out, marker):
    """decode_file, except that the first call on the cluster writes its output's temporary file and
    then kills its worker process just before the rename (os._exit: no cleanup runs)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return {**decode_file(inp, out, threads=1), "pid": os.getpid()}

    def die(tmp, target):
        os.write(fd, json.dumps({"pid": os.getpid(), "input": inp, "temporary": str(tmp)}).encode())
        os.close(fd)
        os._exit(1)
    os.replace = die
    return decode_file(inp, out, threads=1)


def test_a_worker_killed_mid_batch_loses_no_file(streams, tmp_path, capsys):
    import cloudpickle
    from remac.ground_decoder.cluster import cluster_runner
    cloudpickle.register_pickle_by_value(sys.modules[__name__])      # workers need not import tests/
    tmp, plain = streams
    jobs = [(str(tmp / "enc" / f"{n}.rmc"), str(tmp_path / f"{n}.dec.png")) for n in NAMES]
    marker = tmp_path.parent / f"{tmp_path.name}.died"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with cluster_runner(cluster.scheduler_address) as runner:
            run_batch("remac-decode", jobs, partial(die_once, marker=str(marker)), as_json=True, quiet=False,
                      runner=runner)
    death = json.loads(marker.read_text())
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(d["file"], d["status"]) for d in lines] == [(inp, "ok") for inp, _ in jobs]
    redone = next(d for d in lines if d["file"] == death["input"])
    assert redone["pid"] != death["pid"]                                 # re-run on another worker process
    assert Path(death["temporary"]).parent == tmp_path and not Path(death["temporary"]).exists()   # swept
    assert outputs(tmp_path) == {f"{n}.dec.png": plain[n] for n in NAMES}    # once each, no temporary file
