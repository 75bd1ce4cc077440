"""Throughput figures from the interleaved rounds (rounds.csv), the one source of every speed the
report, its plot and the README's table quote.

    point, lo, hi = bootstrap_ratio(a, b)        # a, b: chars/s of two rows, one pair per round
    figures = throughput(rounds_rows, reference) # {impl: Throughput}, and the noise floor

A ratio is taken within a round (runs seconds apart share the machine's mood) and its 95 % interval
comes from resampling the rounds. The reference row runs twice per round (NOISE, "torch-layer
(again)"): its ratio to itself is the noise floor, and a ratio whose interval reaches into it is
"no measurable difference". numpy only: run.py, report.py and the tests import it.
"""

import math
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95


def again(reference):
    """The label of the reference's second process in each round (the noise floor's other side)."""
    return f"{reference} (again)"


def bootstrap_ratio(a, b, samples=BOOTSTRAP_SAMPLES, level=LEVEL, seed=BOOTSTRAP_SEED):
    """(median of a[i] / b[i], low, high): the median of the per-round ratios and its `level`
    percentile-bootstrap interval, the rounds resampled with replacement as pairs (a round's two
    figures stay together). a, b: equal-length sequences, one figure per round. Fewer than two
    rounds: no interval (nan, nan); no round: None."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be paired 1-d sequences, got shapes {a.shape} and {b.shape}")
    if len(a) == 0:
        return None
    ratios = a / b
    point = float(np.median(ratios))
    if len(a) < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ratios), size=(samples, len(ratios)))  # each row: one resample of the rounds
    medians = np.median(ratios[picks], axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(medians, [tail, 1 - tail], method="inverted_cdf")
    return point, float(lo), float(hi)


@dataclass
class Throughput:
    impl: str
    chars_per_s: float        # median over the rounds this row finished
    step_ms: float            # median of the rounds' median steps
    rounds: int               # rounds it finished (with the reference beside it for the ratio)
    timed_steps: float        # median timed steps per round
    capped: int               # rounds the time cap (--budget) stopped before round_iters
    ratio: float = None       # median of its per-round ratios to the reference
    lo: float = None          # 95 % bootstrap interval of the ratio
    hi: float = None
    verdict: str = ""         # "faster", "slower" or "no measurable difference" (see noise floor)


def per_round(rows, impl):
    """{round: chars/s} of one implementation's ok rounds."""
    return {int(r["round"]): float(r["chars_per_s"]) for r in rows
            if r["impl"] == impl and r.get("status") == "ok" and not _missing(r.get("chars_per_s"))}


def _missing(x):
    return x is None or x == "" or (isinstance(x, float) and math.isnan(x))


def paired(rows, impl, reference):
    """(impl's chars/s, reference's chars/s) over the rounds both finished, in round order."""
    mine, ref = per_round(rows, impl), per_round(rows, reference)
    common = sorted(set(mine) & set(ref))
    return [mine[k] for k in common], [ref[k] for k in common]


def noise_floor(rows, reference):
    """(ratio, lo, hi, floor) of the reference's second process against its first, floor = the
    furthest its 95 % interval strays from 1 (at least its own ratio's distance); None without it."""
    got = bootstrap_ratio(*paired(rows, again(reference), reference))
    if got is None or math.isnan(got[1]):
        return None
    ratio, lo, hi = got
    return ratio, lo, hi, max(abs(lo - 1), abs(hi - 1), abs(ratio - 1))


def verdict(ratio, lo, hi, floor):
    """'no measurable difference' when the ratio's interval reaches into 1 +- floor (no floor
    measured: when it holds 1; no interval: always), else 'faster' or 'slower' than the reference."""
    floor = floor or 0.0
    if ratio is None or math.isnan(lo) or (lo <= 1 + floor and hi >= 1 - floor):
        return "no measurable difference"
    return "faster" if ratio > 1 else "slower"


def throughput(rows, reference):
    """({impl: Throughput} in first-seen order, noise floor or None) from rounds.csv's rows (dicts)."""
    floor = noise_floor(rows, reference)
    out = {}
    for impl in dict.fromkeys(r["impl"] for r in rows):
        if impl == again(reference):
            continue
        ok = [r for r in rows if r["impl"] == impl and r.get("status") == "ok" and not _missing(r.get("chars_per_s"))]
        if not ok:
            continue
        steps = [float(r["timed_steps"]) for r in ok if not _missing(r.get("timed_steps"))]
        t = Throughput(impl, float(np.median([float(r["chars_per_s"]) for r in ok])),
                       float(np.median([float(r["step_ms_median"]) for r in ok])), len(ok),
                       float(np.median(steps)) if steps else math.nan,
                       sum(str(r.get("capped_by_budget")) == "yes" for r in ok))
        got = bootstrap_ratio(*paired(rows, impl, reference))
        if got is not None:
            t.ratio, t.lo, t.hi = got
            t.verdict = "reference" if impl == reference else verdict(*got, floor[3] if floor else None)
        out[impl] = t
    return out, floor
