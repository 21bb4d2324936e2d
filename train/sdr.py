"""SDR as the project reports it (issue 6, `demix eval`): per source and
track, 10 log10(sum s^2 / sum (s - s_hat)^2) over all samples and both
channels; the median over tracks per source; the mean of the medians.

A reference whose mean power is below SILENT_POWER (one 16-bit step, -90.3
dBFS) is silent in that track: its SDR says nothing about separation, so it
is None and left out of the median. `tools/sdr.c` uses the same definition
(SDR_SILENT_MEAN_SQUARE). Logs of the first run (models/*.train.jsonl up to
2026-12-02) used -80 dBFS; no validation reference lies between the two.
"""
from __future__ import annotations

import math
import statistics

SILENT_POWER = (1.0 / 32768) ** 2   # one 16-bit step (tools/sdr.h)


def sdr(reference, estimate) -> float | None:
    """Whole-signal SDR in dB of torch tensors of one shape (float64 sums)."""
    ref = reference.double()
    err = ref - estimate.double()
    num = float(ref.square().sum())
    if num / max(1, ref.numel()) < SILENT_POWER:
        return None
    den = float(err.square().sum())
    if den == 0.0:
        return math.inf
    return 10.0 * math.log10(num / den)


def summarise(per_track: dict, sources) -> dict:
    """per_track: track -> {source: sdr or None}. Returns the medians per
    source (None where no track has that source) and their mean."""
    medians = {}
    for s in sources:
        values = [v[s] for v in per_track.values() if v.get(s) is not None]
        medians[s] = statistics.median(values) if values else None
    present = [m for m in medians.values() if m is not None]
    mean = sum(present) / len(present) if present else None
    return {"median": medians, "mean": mean}
