"""Training curve: validation SDR per source (and their mean) against
training hours, from a train.py log.jsonl, as a PNG (matplotlib).

  python3 train/plot_curve.py LOG.jsonl OUT.png [TITLE]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SOURCES = ("drums", "bass", "vocals", "other")


def main(argv):
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    with open(argv[0]) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    recs = [r for r in recs if r.get("mean") is not None]
    if not recs:
        raise SystemExit(f"{argv[0]}: no validation records")
    hours = [r["hours"] for r in recs]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for s in SOURCES:
        ax.plot(hours, [r["median"].get(s) for r in recs], marker=".",
                label=s)
    ax.plot(hours, [r["mean"] for r in recs], color="black", linewidth=2,
            label="mean")
    ax.axhline(4.65, color="grey", linestyle="--", linewidth=1,
               label="target 4.65 dB")
    ax.set_xlabel("training time (GPU hours, H200)")
    ax.set_ylabel("validation SDR (dB, median over tracks)")
    ax.set_title(argv[2] if len(argv) == 3 else "validation SDR")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
