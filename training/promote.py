"""Rank a candidate against the shipped model with the real coder and, only if it is better (the
rule: `promotes`), make it the shipped model in one go:
`python -m training.promote grey models/weights/grey_klt.safetensors`.

    candidate --copy--> calibrate (scale floors, fitted coder tables)
              --rank--> BD-rates vs JPEG 2000 on each val set (training.rank, real bytes)
    promotes(results)? (mean head-to-head BD-rate over the grid-free and colour sets < 0, no
    ceiling lost anywhere, the grid-aligned val sets no worse than ALIGNED_SLACK)
      yes: file the shipped release into the model store (models/store/<model ID>/: entropy model,
           int8 decoder, library metadata: its streams stay decodable), prune the store to the
           newest STORE_KEEP releases (older ones and their golden streams leave the tree;
           scripts/restore_release.sh brings one back from history), install the calibrated
           checkpoint as models/weights/<name>.safetensors, re-export every artifact and rebuild the
           default library (scripts/make_artifacts.sh), new golden vector and test floors
           (scripts.make_golden)
      no:  change nothing; print the numbers
A decoder-stage candidate (`train --stage decoder`: an overlay of decoder + inverse gains) is laid
over the shipped checkpoint and ranked without recalibrating: the streams are the shipped model's
byte for byte, so only PSNR can differ, and promoting it keeps the model ID (no store release).
Then run the tests and commit. --force promotes regardless (never without a reason in the log).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from remac.bitstream import library as lib
from remac.bitstream import modelfile, store
from remac.models.archive import archive_file
from remac.models.ground import STORE, ground_weights_path
from training import DATA, ROOT
from training.calibrate import FLOOR_MODES, calibrate
from remac.models.codec import checkpoint_path
from training.rank import rank
from evaluation.variants import COLOUR_SETS, GRID_FREE


CEILING_SLACK = 0.5     # dB: the candidate's top PSNR may not fall further below the shipped model's
# the sets a promotion is decided on: raw rover frames have no JPEG grid and Mastcam colour comes
# through other pipelines, so the grid-free and colour variants judge; the aligned sets only guard
DECISION_SETS = GRID_FREE + COLOUR_SETS
ALIGNED_SLACK = 0.3     # %: how much worse (head to head) a grid-aligned val set may get
STORE_KEEP = 2          # releases kept in models/store: each adds ~5 MB to a tree that a GPU job's
                        # copy (tree + data pack) must fit in 64 MiB (training.pack.room_mib)
GOLDEN = ROOT / "tests" / "data" / "golden"


def keeps_ceiling(result: dict) -> bool:
    """The candidate's top PSNR is within CEILING_SLACK of the shipped model's."""
    return max(p[1] for p in result["candidate"]) >= max(p[1] for p in result["shipped"]) - CEILING_SLACK


def promotes(results: dict) -> tuple:
    """results: training.rank.rank's, over RANKED_SETS -> (promote?, the reason in a line). The
    mean head-to-head BD-rate over DECISION_SETS must be negative, every set keep its ceiling,
    and no grid-aligned set lose more than ALIGNED_SLACK %."""
    heads = {k: results[k]["candidate_vs_shipped"] for k in DECISION_SETS if k in results}
    if len(heads) < len(DECISION_SETS) or None in heads.values():
        return False, "no head-to-head overlap on " + ", ".join(k for k in DECISION_SETS if heads.get(k) is None)
    mean = sum(heads.values()) / len(heads)
    lost = [k for k, r in results.items() if not keeps_ceiling(r)]
    worse = [k for k, r in results.items() if k not in DECISION_SETS
             and (r["candidate_vs_shipped"] is None or r["candidate_vs_shipped"] > ALIGNED_SLACK)]
    line = f"mean head to head over the grid-free and colour sets {mean:+.2f} %"
    if lost or worse:
        return False, line + "; " + ", ".join([f"{k} loses its ceiling" for k in lost] +
                                              [f"{k} worse than {ALIGNED_SLACK} %" for k in worse])
    return mean < 0, line


def upgrade_file(path: Path, spatial: bool = False):
    """Give a checkpoint every quality level its architecture now has (training.surgery.extend_levels:
    the klt models have 9 levels, older checkpoints 8) and, if asked, spatial context
    (training.surgery.with_spatial), in place, metadata kept."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from remac.models.codec import KLT_LAMBDAS, LAMBDAS
    from training.surgery import extend_levels, with_spatial
    state = load_file(str(path))
    levels = len(KLT_LAMBDAS if "encoder.proj.weight" in state else LAMBDAS)
    add_spatial = spatial and "hyper.spatial" not in state
    if state["log_gain"].shape[0] == levels and not add_spatial:
        return
    upgraded = extend_levels(state, levels)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    print(f"{path.name}: quality levels {state['log_gain'].shape[0]} -> {levels}"
          + (", spatial context" if add_spatial else ""))
    save_file(with_spatial(upgraded) if add_spatial else upgraded, str(path), metadata=meta)


def release_shipped(name: str) -> Path:
    """File the shipped `name` model (and the default library as it built it) into models/store,
    its decoder with int8 weights (models.archive)."""
    model = modelfile.load(name)
    folder = modelfile.ASSETS / name
    released = store.release(STORE, model.model_id.hex(),
                             {"model.json": folder / "model.json", "entropy.npz": folder / "entropy.npz",
                              "decoder.safetensors": ground_weights_path(name)}, library=lib.DEFAULT)
    archive_file(released / "decoder.safetensors")
    return released


def write_candidate(name: str, candidate: Path, out: Path) -> bool:
    """Copy a candidate checkpoint to `out`; a decoder-stage overlay (decoder + inverse gains) is
    first laid over the shipped checkpoint (training.export.with_overlay). -> whether it was
    an overlay (its bitstream side is then the shipped one, calibration included)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from remac.models.checkpoint import read_checkpoint
    from training.export import is_overlay, with_overlay
    with safe_open(str(candidate), framework="pt") as f:
        keys, overlay_meta = set(f.keys()), f.metadata()
    if not is_overlay(keys):
        shutil.copyfile(candidate, out)
        return False
    state = load_file(str(candidate))
    with safe_open(str(checkpoint_path(name)), framework="pt") as f:
        meta = f.metadata()
    merged = with_overlay(read_checkpoint(checkpoint_path(name)), state, overlay_meta, str(candidate))
    meta |= {"decoder_stage_steps": overlay_meta.get("step", "?"), "decoder_extra": overlay_meta.get("decoder_extra", ""),
             "decoder_wide": overlay_meta.get("decoder_wide", "")}
    save_file(merged, str(out), metadata=meta)
    print(f"{candidate.name}: a decoder-stage overlay ({meta['decoder_stage_steps']} steps) on the shipped {name} model")
    return True


def same_bitstream(a: Path, b: Path) -> bool:
    """Whether two checkpoints code identically: every tensor but the decoder's and the inverse
    gains is equal (then the model ID is too: only the ground's reconstruction differs)."""
    import torch
    from safetensors.torch import load_file
    sa, sb = ({k: v for k, v in load_file(str(p)).items() if not k.startswith("decoder.") and k != "log_inv_gain"}
              for p in (a, b))
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def install(name: str, calibrated: Path, data: Path, candidate: Path = None):
    """Make `calibrated` the shipped `name` model (the old one goes to the store) and rebuild every
    artifact. A run's own checkpoint (models/weights/<run>.safetensors) is then removed: the run goes
    on from the shipped checkpoint (training.train), so the tree holds one copy of it.
    A candidate that codes exactly as the shipped model (a new decoder only) keeps its model ID:
    nothing is filed in the store, and every stream made so far decodes with the new decoder."""
    if same_bitstream(calibrated, checkpoint_path(name)):
        print("the bitstream side is unchanged: model ID kept, only the ground decoder is new")
    else:
        release_shipped(name)
    for model_id in store.prune(STORE, STORE_KEEP):
        for golden in GOLDEN.glob(f"*_{model_id}.*"):
            golden.unlink()
        print(f"release {model_id} pruned from {STORE} (kept: the newest {STORE_KEEP}); "
              f"bash scripts/restore_release.sh {model_id} brings it back from history")
    shutil.copyfile(calibrated, checkpoint_path(name))
    subprocess.run(["bash", "scripts/make_artifacts.sh"], cwd=ROOT, check=True, env={**os.environ, "DATA": str(data)})
    subprocess.run([sys.executable, "-m", "scripts.make_golden"], cwd=ROOT, check=True)
    # last: an install stopped before here leaves the run's own checkpoint (its decoder included) intact
    if candidate is not None and candidate.resolve().parent == checkpoint_path(name).resolve().parent \
            and candidate.resolve() != checkpoint_path(name).resolve():
        candidate.unlink()
        print(f"removed {candidate}: run {candidate.stem} resumes from {checkpoint_path(name)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=("grey",), help="grey (colour is coded as planes by grey since format 3.0)")
    ap.add_argument("candidate", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, help="first N images of each val set (quick look; never promotes)")
    ap.add_argument("--force", action="store_true", help="promote even if it is not better")
    ap.add_argument("--report", type=Path, help="also write the numbers here as JSON")
    ap.add_argument("--floors", choices=FLOOR_MODES, default="split",
                    help="scale-floor rule of the calibration (training.calibrate's module doc)")
    ap.add_argument("--spatial", action="store_true",
                    help="give the candidate spatial context (channel 0 in passes, bitstream.spatial) first")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        calibrated = Path(tmp) / f"{args.name}.safetensors"
        if not write_candidate(args.name, args.candidate, calibrated):     # an overlay codes as the shipped
            upgrade_file(calibrated, args.spatial)                          # model: same calibration, same ID
            calibrate(args.name, str(args.data), weights=str(calibrated), mode=args.floors)
        results = rank(args.name, calibrated, args.data, args.limit)
        better, why = promotes(results)
        print(why)
        if args.report:
            args.report.write_text(json.dumps({k: {f: (v[f].tolist() if hasattr(v[f], "tolist") else v[f]) for f in v}
                                               for k, v in results.items()}, indent=1) + "\n")
        if args.limit and not args.force:
            print("--limit: a quick look only, nothing promoted")
        elif better or args.force:
            print(f"promoting {args.candidate} as the shipped {args.name} model"
                  + (" (forced)" if args.force and not better else ""))
            install(args.name, calibrated, args.data, args.candidate)
        else:
            print(f"not promoted: {why}")


if __name__ == "__main__":
    main()
