"""Plot the training logs (training/logs/*.csv) to docs/img/training.png: `python -m training.plot_training`."""
import csv
import sys
from pathlib import Path

from training import LOGS, ROOT


def read(path):
    train, val = [], {}
    for row in csv.reader(open(path)):
        if row[0] == "train":
            train.append((int(row[1]), float(row[5]), float(row[6])))
        elif row[0] == "val":
            val.setdefault(int(float(row[3])), []).append((int(row[1]), float(row[5]), float(row[6])))
    return train, val


def main(out=ROOT / "docs" / "img" / "training.png"):
    """One row per modality (grey, colour): validation PSNR and bpp at q10/50/90 over steps, one
    line style per run (runs that continue an earlier one start at its last step)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    logs = sorted(LOGS.glob("*.csv"))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    colours = {10: "tab:blue", 50: "tab:orange", 90: "tab:green"}
    styles = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1)), (0, (3, 1, 1, 1))]
    for row, modality in enumerate(("grey", "colour")):
        runs = [p for p in logs if p.stem.split("_")[0] == modality]
        for k, path in enumerate(runs):
            train, val = read(path)
            base = path.with_name(modality + ".csv")
            offset = read(base)[0][-1][0] if base != path and base.exists() else 0   # continuations
            for q, pts in sorted(val.items()):
                kw = dict(color=colours.get(q), linestyle=styles[k % len(styles)], marker=".", ms=3,
                          label=path.stem if q == 90 else None)
                axes[row, 0].plot([p[0] + offset for p in pts], [p[2] for p in pts], **kw)
                axes[row, 1].plot([p[0] + offset for p in pts], [p[1] for p in pts], **kw)
        axes[row, 0].set_ylabel(f"{modality}: val PSNR (dB, rounded latents)")
        axes[row, 1].set_ylabel(f"{modality}: val bpp (estimated)")
        axes[row, 1].legend(fontsize=7, title="run (colour: q10 blue, q50 orange, q90 green)",
                            title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    for ax in axes.flat:
        ax.set_xlabel("step (batch 8 x 128²)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
