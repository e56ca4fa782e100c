"""Plot the training logs (models/logs/*.csv) to docs/img/training.png: `python -m models.plot_training`."""
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read(path):
    train, val = [], {}
    for row in csv.reader(open(path)):
        if row[0] == "train":
            train.append((int(row[1]), float(row[5]), float(row[6])))
        elif row[0] == "val":
            val.setdefault(int(float(row[3])), []).append((int(row[1]), float(row[5]), float(row[6])))
    return train, val


def main(out=ROOT / "docs" / "img" / "training.png"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    logs = sorted((ROOT / "models" / "logs").glob("*.csv"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {10: "tab:blue", 50: "tab:orange", 90: "tab:green"}
    for path in logs:
        train, val = read(path)
        base = path.with_name(path.stem.split("_")[0] + ".csv")
        offset = read(base)[0][-1][0] if base != path and base.exists() else 0   # stage 2 follows stage 1
        style = "-o" if path.stem.startswith("grey") else "-s"
        for q, pts in sorted(val.items()):
            kw = dict(ms=3, color=colours.get(q), alpha=1.0 if offset else 0.7,
                      label=f"{path.stem} q{q}", linestyle="--" if offset else "-")
            axes[0].plot([p[0] + offset for p in pts], [p[2] for p in pts], style[1], **kw)
            axes[1].plot([p[0] + offset for p in pts], [p[1] for p in pts], style[1], **kw)
    axes[0].set_ylabel("val PSNR (dB, rounded latents)")
    axes[1].set_ylabel("val bpp (estimated from likelihoods)")
    for ax in axes:
        ax.set_xlabel("step (batch 8 x 128²); dashed: continuations (stage 2 decoder; fine-tune)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
