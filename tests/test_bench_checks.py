"""The benchmark's statistics and self-checks, without running a benchmark: the bootstrap interval
against an exact enumeration, the noise floor's verdicts, the re-scoring check catching broken
rows, the busy run's warning, and the README's findings table against the committed results.
numpy and the report's pandas only: no framework enters this process."""

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.stats import again, bootstrap_ratio, noise_floor, throughput, verdict
from common.batches import Batches
from common.checkpoint import save_checkpoint
from common.config import Config
from common.corpus import Vocabulary
from common.frameworks import make_model
from common.sampling import sample
from common.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]
REF = "torch-layer"


# ---------------------------------------------------------------------------------------------
# bootstrap_ratio against every resample, enumerated

def exact_quantiles(ratios, level=0.95):
    """The percentile interval of the median over all n**n equally likely resamples of `ratios`
    (the bootstrap distribution exactly): {value: probability} and its two quantiles."""
    n, mass = len(ratios), {}
    for pick in itertools.product(range(n), repeat=n):
        m = float(np.median([ratios[i] for i in pick]))
        mass[m] = mass.get(m, 0) + 1 / n ** n
    values = sorted(mass)
    cdf = np.cumsum([mass[v] for v in values])
    tail = (1 - level) / 2
    lo = values[int(np.searchsorted(cdf, tail - 1e-12))]
    hi = values[int(np.searchsorted(cdf, 1 - tail - 1e-12))]
    return values, cdf, lo, hi


@pytest.mark.parametrize("ratios", [[0.50, 0.52, 0.55, 0.61, 0.70], [0.9, 1.0, 1.1, 1.3], [2.0, 2.5, 4.0]])
def test_bootstrap_interval_is_the_enumerated_one(ratios):
    b = np.array([1000.0, 2000.0, 1500.0, 900.0, 1200.0][:len(ratios)])
    point, lo, hi = bootstrap_ratio(np.array(ratios) * b, b)
    assert point == pytest.approx(np.median(ratios))
    values, cdf, exact_lo, exact_hi = exact_quantiles(ratios)
    # Monte Carlo with 10,000 resamples: the CDF at a value is within +-0.007 (4.5 standard errors
    # at p = 0.025) of the exact one, so the drawn quantile is the exact one or a neighbour whose
    # exact CDF lies that close to the 2.5 % (97.5 %) line
    for got, want, p in ((lo, exact_lo, 0.025), (hi, exact_hi, 0.975)):
        if got != pytest.approx(want):
            k = values.index(min(values, key=lambda v: abs(v - got)))
            assert abs(cdf[k] - p) < 0.007 or abs((cdf[k - 1] if k else 0) - p) < 0.007, (got, want)
    assert lo <= point <= hi


def test_bootstrap_of_constant_ratios_is_that_ratio_and_is_reproducible():
    a, b = [300.0, 600.0, 900.0, 1200.0, 150.0], [100.0, 200.0, 300.0, 400.0, 50.0]
    assert bootstrap_ratio(a, b) == (3.0, 3.0, 3.0)  # every resample's median is 3
    noisy = [310.0, 560.0, 950.0, 1190.0, 140.0]
    assert bootstrap_ratio(noisy, b) == bootstrap_ratio(noisy, b)  # the fixed seed
    assert bootstrap_ratio([], []) is None
    assert math.isnan(bootstrap_ratio([2.0], [1.0])[1])  # one round: no interval
    with pytest.raises(ValueError):
        bootstrap_ratio([1.0, 2.0], [1.0])


def rounds_rows(speeds):
    """rounds.csv rows from {impl: [chars/s per round]}."""
    return [{"round": k + 1, "impl": impl, "chars_per_s": v, "step_ms_median": 2048e3 / v, "status": "ok",
             "timed_steps": 20, "capped_by_budget": "no"} for impl, vs in speeds.items() for k, v in enumerate(vs)]


def test_noise_floor_and_verdicts():
    ref = [1000.0, 1100.0, 900.0, 1050.0, 950.0]
    rows = rounds_rows({REF: ref, again(REF): [r * f for r, f in zip(ref, [1.02, 0.97, 1.01, 0.99, 1.03])],
                        "near": [r * f for r, f in zip(ref, [1.03, 1.04, 1.02, 1.05, 1.03])],
                        "slow": [r * f for r, f in zip(ref, [0.50, 0.52, 0.49, 0.51, 0.50])]})
    ratio, lo, hi, floor = noise_floor(rows, REF)
    assert (ratio, lo, hi) == bootstrap_ratio([r["chars_per_s"] for r in rows if r["impl"] == again(REF)], ref)
    assert floor == pytest.approx(max(abs(lo - 1), abs(hi - 1), abs(ratio - 1)))
    figures, got_floor = throughput(rows, REF)
    assert got_floor == (ratio, lo, hi, floor)
    assert again(REF) not in figures and figures[REF].verdict == "reference"
    assert figures["near"].verdict == "no measurable difference"  # 1.02-1.05 reaches into 1 +- ~3 %
    assert figures["slow"].verdict == "slower" and figures["slow"].ratio == pytest.approx(0.50)
    assert figures["slow"].chars_per_s == pytest.approx(np.median([r["chars_per_s"] for r in rows if r["impl"] == "slow"]))
    assert verdict(1.5, 1.4, 1.6, 0.05) == "faster" and verdict(1.5, 1.4, 1.6, 0.45) == "no measurable difference"
    assert verdict(0.9, 0.8, 1.01, None) == "no measurable difference" and verdict(0.9, 0.8, 0.95, None) == "slower"


# ---------------------------------------------------------------------------------------------
# The self-check: a row's own figures against numpy's forward of its final weights

TEXT = "the quick brown fox jumps over a lazy dog and then it sleeps under old trees.\n" * 40


@pytest.fixture()
def trained(tmp_path):
    """A small numpy model trained a few steps, its checkpoint, validation batches and a worker-like
    result: final validation at the last step and a sample drawn from it."""
    from benchmarks.worker import validation_loss
    vocab = Vocabulary.from_text(TEXT)
    config = Config(vocab_size=len(vocab), hidden_size=16, num_layers=1, batch_size=4, seq_length=16)
    data = vocab.encode(TEXT)
    train, val = Batches(data[:2800], 4, 16, "train"), Batches(data[2800:], 4, 16, "validation")
    model = make_model("numpy", config, init_weights(config), path="cell")
    for k in range(20):
        model.train_step(*train[k % len(train)])
    path = save_checkpoint(tmp_path / "w.safetensors", model.get_weights(), vocab, config, "numpy")
    result = {"val": [{"step": 19, "val_loss": validation_loss(model, val, 2)}], "sample_length": 80,
              "sample_prime": "\n", "sample_temperature": 0.8,
              "sample": sample(model, vocab, 80, temperature=0.8, prime="\n", seed=config.seed)}
    return result, path, val, model, vocab, config


def test_a_sound_row_passes(trained):
    from benchmarks.checks import self_check
    result, path, val, *_ = trained
    got = self_check(result, path, val, 2, 19)
    assert got["check"] == "ok", got
    assert got["numpy_val_loss"] == pytest.approx(result["val"][-1]["val_loss"], abs=1e-12)
    assert abs(got["sample_z"]) < 4  # its own text: about N(0, 1)


def test_weights_perturbed_after_training_are_caught(trained):
    from benchmarks.checks import self_check
    result, path, val, model, vocab, config = trained
    rng = np.random.default_rng(1)
    bad = {k: v + rng.normal(0, 0.5, v.shape).astype(v.dtype) for k, v in model.get_weights().items()}
    save_checkpoint(path, bad, vocab, config, "numpy")  # the file no longer holds what was validated
    got = self_check(result, path, val, 2, 19)
    assert got["check"].startswith("broken: its final validation loss ")
    assert f"is not numpy's {got['numpy_val_loss']:.6f} on its final weights (tolerance 0.0001)" in got["check"]
    assert "its sample is not text its final weights write (surprise z = " in got["check"]


def test_a_wrong_or_missing_final_validation_and_a_foreign_sample_are_caught(trained):
    from benchmarks.checks import self_check
    result, path, val, *_ = trained
    wrong = {**result, "val": [{"step": 19, "val_loss": result["val"][-1]["val_loss"] + 2e-4}]}
    assert "its final validation loss" in self_check(wrong, path, val, 2, 19)["check"]
    assert self_check({**result, "val": [{"step": 9, "val_loss": 3.0}]}, path, val, 2, 19)["check"] == \
        "broken: no validation at the final step 19"
    symbols = "\n" + "".join(np.random.default_rng(0).choice(list("xzqjk.\n"), 80))  # rare letters: not what it writes
    got = self_check({**result, "sample": symbols}, path, val, 2, 19)
    assert got["check"].startswith("broken: its sample is not text its final weights write") and got["sample_z"] < -6
    assert "not text of its vocabulary" in self_check({**result, "sample": "(no sample: boom)"}, path, val, 2, 19)["check"]


# ---------------------------------------------------------------------------------------------
# The report: a busy run's warning, and the README's table from the same figures

def report_inputs(busy):
    summary = pd.DataFrame([{"impl": impl, "status": "ok", "others_busy_cores": 0.0, "others_busy_cores_before": 0.0,
                             "time_to_first_step_s": 1.0} for impl in (REF, "numpy-cell")])
    rows = rounds_rows({REF: [1000.0, 1010.0, 990.0], again(REF): [1005.0, 1000.0, 995.0],
                        "numpy-cell": [500.0, 490.0, 510.0]})
    for r in rows:
        r.update(others_busy_cores=0.0, others_busy_cores_before=0.18)  # under BUSY_CORES (0.3)
    rounds = pd.DataFrame(rows)
    if busy:
        rounds.loc[(rounds["impl"] == "numpy-cell") & (rounds["round"] == 2), "others_busy_cores"] = 1.2
    return summary, rounds


def test_a_quiet_run_opens_with_the_fastest_row_and_the_true_load():
    from benchmarks.report import findings
    summary, rounds = report_inputs(busy=False)
    text = findings(summary, rounds, pd.DataFrame())[0]
    assert text.startswith(f"**Findings.** Fastest: `{REF}` at 1,000 chars/s; slowest: `numpy-cell` at 500")
    assert "`numpy-cell` 0.50x (" in text and "Noise floor: torch-layer against itself" in text
    assert "kept at most 0.18 cores busy around any worker" in text  # the largest recorded, as recorded


def test_a_busy_run_opens_with_a_warning_instead_of_the_fastest_row():
    from benchmarks.report import findings
    summary, rounds = report_inputs(busy=True)
    text = findings(summary, rounds, pd.DataFrame())[0]
    assert text.startswith("**Findings.** **This run cannot be trusted:** other processes kept more than 0.3 "
                           "cores busy beside `numpy-cell` (1 of 3 rounds beside up to 1.20 busy cores)")
    assert "Fastest" not in text and "0.50x" not in text
    summary, rounds = report_inputs(busy=False)  # the machine busy before the run: the same warning
    text = findings(summary, rounds, pd.DataFrame(), {"run": {"busy_before_run": 0.9}})[0]
    assert "**This run cannot be trusted:**" in text and "the machine before the run (0.90 busy cores)" in text


def test_the_readme_table_is_the_committed_results_table():
    out = subprocess.run([sys.executable, "-m", "benchmarks.report", "results", "--readme-table"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    table = out.stdout.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    glance = readme.split("## Findings at a glance")[1].split("\n## ")[0]
    committed = "\n".join(line for line in glance.splitlines() if line.startswith("|"))
    assert committed == table
    rounds = pd.read_csv(ROOT / "results" / "rounds.csv")  # the figures are the rounds' medians
    for line in table.splitlines()[2:]:
        impl, chars = re.match(r"\| `([^`]+)` \| [^|]* \| ([\d,]+) \|", line).groups()
        assert chars == f"{rounds[rounds['impl'] == impl]['chars_per_s'].median():,.0f}"
