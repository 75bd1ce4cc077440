"""REPORT.md and its plots, made from the files benchmarks/run.py wrote, and nothing else.

    python -m benchmarks.report results           # writes results/REPORT.md and results/*.png

Reads summary.csv, steps.csv, sweep.csv, gemm.csv, environment.json, samples.txt and, when
present, levers.csv and threads.csv from `python -m benchmarks.levers` (the speed levers tried,
before and after, for "What made it fast"; every implementation at 1 and 2 threads).

The report opens with findings taken from the figures (findings below): a busy run's warning that
it cannot be trusted, else the fastest and slowest implementation and every ratio with its 95 %
interval and verdict against the noise floor; the rows the self-checks broke; whether the loss
curves agree; the machine's load. Every throughput (tables, throughput.png, findings, the README's
table) comes from the interleaved rounds (benchmarks/stats.py); a sweep step measured on a busy
machine or contradicted by the rounds is not read as one.

    python -m benchmarks.report results --readme-table   # prints the README's findings table
"""

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks import roofline  # noqa: E402
from benchmarks.checks import VAL_TOLERANCE  # noqa: E402
from benchmarks.flops import FORMULA, MEMORY_FORMULA, activation_bytes, flops_per_char  # noqa: E402
from benchmarks.run import BUSY_CORES, NOISE, REFERENCE  # noqa: E402
from benchmarks.stats import LEVEL, throughput  # noqa: E402
from common.config import Config  # noqa: E402
from common.errors import RosettaError  # noqa: E402

MEMORY_GOAL = 2  # peak - idle memory within this many times the analytic bound (issue 6)
MB = 2 ** 20  # the workers' RSS figures are in these units
CLIFF = 1.15  # a slowdown this many times steeper than the FLOPs' growth is called out as a cliff
DISAGREE = 1.5  # two figures of one implementation this many times apart: the lower one is not a finding
LOSS_AGREE = 1e-3  # largest loss difference at one step, over the first 10 steps, that counts as agreeing
DASHES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1))]  # curves that coincide stay visible


# ---------------------------------------------------------------------------------------------
# Formatting

def md_table(rows, columns):
    """A markdown table: rows are dicts (or a DataFrame), columns a list of (key, title) pairs."""
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    lines = ["| " + " | ".join(title for _, title in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = [str(row.get(key, "")).replace("|", "\\|").replace("\n", " ") for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def missing(x):
    return x is None or (isinstance(x, float) and math.isnan(x)) or x == ""


def fmt(x, spec=",.0f", suffix=""):
    return "–" if missing(x) else f"{x:{spec}}{suffix}"


# ---------------------------------------------------------------------------------------------
# Plots: each returns the file name it wrote, or None when there is nothing to draw

def plot_losses(steps, out):
    """Loss curves overlaid, with common.plotting.plot_loss_curves (this module's own if absent)."""
    if steps.empty:
        return None
    curves = {}
    for impl, df in steps.groupby("impl", sort=False):
        val = df.dropna(subset=["val_loss"])
        curves[impl] = (df["step"].to_numpy(), df["loss"].to_numpy(),
                        val["step"].to_numpy(), val["val_loss"].to_numpy())
    n = max(len(c[0]) for c in curves.values())
    beta = 1 - 1 / max(2, min(25, n // 10))  # an average over ~10 % of the run
    title = "Training loss (raw: faint; smoothed: solid) and validation loss (dots)"
    try:
        from common.plotting import plot_loss_curves
    except ImportError:
        plot_loss_curves = own_loss_curves
    plot_loss_curves(curves, out / "loss.png", title=title, beta=beta)
    return "loss.png"


def own_loss_curves(curves, path, title, beta):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for n, (impl, (steps, losses, val_steps, val_losses)) in enumerate(curves.items()):
        color = f"C{n}"
        ax.plot(steps, losses, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, pd.Series(losses).ewm(alpha=1 - beta).mean(), color=color, linewidth=1.6,
                linestyle=DASHES[n % len(DASHES)], label=f"{impl} (smoothed)")
        if len(val_steps):
            ax.plot(val_steps, val_losses, "o", color=color, markersize=5, label=f"{impl} validation")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    save(fig, path.parent, path.name)


def plot_throughput(summary, rounds, out):
    """Each row's ratio to REFERENCE (the rounds' median) with its 95 % interval, and the noise floor
    as a band around 1: the figures of the findings and tables, nothing else."""
    figures, floor = throughput_figures(rounds)
    ok = set(summary[summary["status"] == "ok"]["impl"]) if not summary.empty else set()
    shown = [t for k, t in figures.items() if k in ok and not missing(t.ratio)]
    if not shown:
        return None
    y = [t.ratio for t in shown]
    lo = [0 if missing(t.lo) else t.ratio - t.lo for t in shown]
    hi = [0 if missing(t.hi) else t.hi - t.ratio for t in shown]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([t.impl for t in shown], y, color=[f"C{i}" for i in range(len(shown))], yerr=[lo, hi], capsize=5)
    if floor:
        ax.axhspan(1 - floor[3], 1 + floor[3], color="grey", alpha=0.25, label="noise floor")
        ax.legend(fontsize=8)
    for x, t in enumerate(shown):
        ax.annotate(f"{t.chars_per_s:,.0f}", (x, t.ratio), ha="center", va="bottom", fontsize=7)
    ax.set_ylabel(f"throughput / {REFERENCE}'s")
    ax.set_title(f"Training throughput, medians of the interleaved rounds (whiskers: {LEVEL:.0%} interval;"
                 f" labels: chars/s)", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out, "throughput.png")


def plot_sweep(sweep, out):
    ok = sweep[sweep["status"] == "ok"] if not sweep.empty else sweep
    if ok.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, (impl, df) in enumerate(ok.groupby("impl", sort=False)):
        ax.plot(df["hidden_size"], df["chars_per_s"], "o-", color=f"C{n}", label=impl)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted(ok["hidden_size"].unique()))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("hidden size H")
    ax.set_ylabel("characters per second")
    ax.set_title("Throughput against hidden size")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save(fig, out, "sweep.png")


def plot_bars(summary, column, ylabel, title, out, name):
    df = summary.dropna(subset=[column])
    if df.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(df["impl"], df[column], color=[f"C{i}" for i in range(len(df))])
    for x, v in enumerate(df[column]):
        ax.annotate(f"{v:,.1f}", (x, v), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out, name)


def save(fig, out, name):
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


# ---------------------------------------------------------------------------------------------
# Reading

def read_csv(path):
    return pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()


def read_samples(path):
    """{impl: text} from samples.txt's `--- impl ---` blocks."""
    samples, impl = {}, None
    if not path.exists():
        return samples
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("--- ") and line.endswith(" ---"):
            impl = line[4:-4]
            samples[impl] = []
        elif impl is not None:
            samples[impl].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in samples.items()}


# ---------------------------------------------------------------------------------------------
# Reading the sweep: where throughput falls faster than the FLOPs grow

def sweep_reading(piv, V, L, doubtful=None):
    """Markdown lines: each implementation's slowdown between consecutive hidden sizes next to the
    growth of the FLOPs per character, and the steps that are steeper than the FLOPs explain; a step
    of an implementation in `doubtful` ({impl: reason}) is named with its reason, not as a finding."""
    doubtful = doubtful or {}
    if missing(V) or missing(L) or piv.empty or len(piv.index) < 2:
        return []
    sizes = sorted(piv.index)
    rows, cliffs, doubted = [], [], []
    for impl in piv.columns:
        for H1, H2 in zip(sizes, sizes[1:]):
            s1, s2 = piv.loc[H1, impl], piv.loc[H2, impl]
            if missing(s1) or missing(s2):
                continue
            slow, grow = s1 / s2, flops_per_char(int(V), H2, int(L)) / flops_per_char(int(V), H1, int(L))
            rows.append({"impl": f"`{impl}`", "step": f"{H1} → {H2}", "slow": f"{slow:.2f}x",
                         "grow": f"{grow:.2f}x", "rate": f"{grow / slow:.2f}"})
            if slow > CLIFF * grow:
                step = f"`{impl}` falls {slow:.1f}x from {H1} to {H2} where the FLOPs grow {grow:.1f}x"
                (doubted if impl in doubtful else cliffs).append(step + (f" ({doubtful[impl]})" if impl in doubtful else ""))
    if not rows:
        return []
    lines = ["## Throughput against hidden size: reading the curve", "",
             "If a step cost only its FLOPs, throughput would fall exactly as the FLOPs per character grow "
             "(about 4x per doubling of H once H is large). Slowdown = chars/s at the smaller size / chars/s "
             "at the larger; FLOP rate kept = FLOP growth / slowdown (1 = the machine does the extra work at "
             "the same rate; above 1 = small sizes were overhead-bound; below 1 = each FLOP got dearer).", "",
             md_table(rows, [("impl", "implementation"), ("step", "H"), ("slow", "slowdown"),
                             ("grow", "FLOPs grow"), ("rate", "FLOP rate kept")]), ""]
    if cliffs:
        lines.append(f"Steeper than the FLOPs explain (by more than {CLIFF:g}x): " + "; ".join(cliffs) + ".")
    else:
        lines.append(f"No step is steeper than the FLOPs explain (by more than {CLIFF:g}x)"
                     + (" among the rows that can be trusted." if doubted else "."))
    if doubted:
        lines.append("\nNot findings, because the machine was busy or the rounds measured otherwise: "
                     + "; ".join(doubted) + ".")
    return lines


# ---------------------------------------------------------------------------------------------
# The machine's load (benchmarks/run.py LOAD_COLUMNS): which figures were taken on a busy machine

def others_busy(row):
    """The cores other processes kept busy around a row's worker (the larger of before and during),
    or None when the run did not record it."""
    values = [row.get(k) for k in ("others_busy_cores", "others_busy_cores_before")]
    values = [float(v) for v in values if not missing(v)]
    return max(values) if values else None


def is_busy(row):
    load = others_busy(row)
    return load is not None and load > BUSY_CORES


def busy_impls(summary, rounds):
    """{impl: what was busy}: implementations whose main run or any of whose rounds ran while other
    processes kept more than BUSY_CORES cores busy (the figure as recorded, two decimals)."""
    out = {}
    for r in summary.to_dict("records"):
        if is_busy(r):
            out[r["impl"]] = f"main run beside {others_busy(r):.2f} busy cores"
    if not rounds.empty:
        for impl, group in rounds.groupby("impl", sort=False):
            loads = [others_busy(r) for r in group.to_dict("records") if is_busy(r)]
            if loads:
                out[impl] = "; ".join(filter(None, [out.get(impl), f"{len(loads)} of {len(group)} rounds beside "
                                                                   f"up to {max(loads):.2f} busy cores"]))
    return out


def busiest(*frames):
    """The most cores other processes kept busy around any worker of these tables, or None."""
    loads = [others_busy(r) for df in frames if not df.empty for r in df.to_dict("records")]
    loads = [x for x in loads if x is not None]
    return max(loads) if loads else None


def loss_spread(steps, first=10, keras=None):
    """Largest difference between the implementations' losses at one step over the first `first` steps
    (keras True: among Keras' rows only, False: among the others, which share PyTorch's Adam formula),
    or None with fewer than two implementations."""
    if steps.empty:
        return None
    wide = steps.pivot_table(index="step", columns="impl", values="loss").iloc[:first]
    if keras is not None:
        wide = wide[[c for c in wide.columns if c.startswith("keras-") == keras]]
    return float((wide.max(axis=1) - wide.min(axis=1)).max()) if wide.shape[1] > 1 else None


def findings(summary, rounds, steps, env=None):
    """Sentences taken from the figures. A busy run (a worker beside more than BUSY_CORES busy cores,
    or the machine busy before the run) opens with a warning that it cannot be trusted instead of
    the fastest row; else the fastest and slowest rows and every ratio with its interval and verdict
    (the rounds, the one source). Then the rows the self-checks broke, whether the loss curves agree,
    and the machine's load."""
    env = env or {}
    got = {k: v for k, v in speeds(summary, rounds).items() if not missing(v[0])}
    figures, floor = throughput_figures(rounds)
    busy = busy_impls(summary, rounds)
    before = (env.get("run") or {}).get("busy_before_run")
    busy_run = bool(busy) or (not missing(before) and before > BUSY_CORES)
    text = ["**Findings.**"]
    if busy_run:
        where = [f"`{k}` ({v})" for k, v in busy.items()]
        if not missing(before) and before > BUSY_CORES:
            where.insert(0, f"the machine before the run ({before:.2f} busy cores)")
        text.append(f"**This run cannot be trusted:** other processes kept more than {BUSY_CORES:g} cores busy "
                    "beside " + ", ".join(where) + ", so its speeds say more about the machine than about the "
                    "implementations. Run it again on a quiet machine before quoting any figure below.")
    elif not got:
        text.append("No implementation finished and passed its checks, so there is no speed to report; "
                    "see the status column.")
    else:
        order = sorted(got, key=lambda k: -got[k][0])
        best, worst = order[0], order[-1]
        text.append(f"Fastest: `{best}` at {fmt(got[best][0])} chars/s"
                    + (f"; slowest: `{worst}` at {fmt(got[worst][0])}, {relative(got[best], got[worst]):.1f}x slower"
                       if worst != best else "") + f" (medians of {int(rounds['round'].max())} interleaved rounds).")
        ratios = [f"`{k}` {interval(figures[k])}" + (" (no measurable difference)"
                                                     if figures[k].verdict == "no measurable difference" else "")
                  for k in order if k != REFERENCE and not missing(got[k][1])]
        if ratios:
            text.append(f"Against {REFERENCE} ({LEVEL:.0%} intervals): " + ", ".join(ratios) + ".")
        text.append(noise_sentence(floor))
    broken = summary[summary["status"].astype(str).str.startswith("broken")] if not summary.empty else summary
    if not broken.empty:
        text.append("Broken, so not findings: " + "; ".join(
            f"`{r['impl']}` ({r['status'][len('broken: '):]})" for r in broken.to_dict("records")) + ".")
    spread = loss_spread(steps)
    within = [s for s in (loss_spread(steps, keras=False), loss_spread(steps, keras=True)) if s is not None]
    if spread is not None and spread < LOSS_AGREE:
        text.append(f"The loss curves agree: at most {spread:.1e} apart over the first 10 steps.")
    elif spread is not None and within and max(within) < LOSS_AGREE:
        text.append(f"The loss curves agree within each Adam formula (at most {max(within):.1e} apart over the "
                    f"first 10 steps) and differ by {spread:.1e} between Keras' and PyTorch's (see Optimizers).")
    elif spread is not None:
        text.append(f"The loss curves do not agree: {spread:.1e} apart within the first 10 steps, more than the "
                    f"{LOSS_AGREE:g} that rounding explains; look for a bug before reading the speeds.")
    if not any(c in summary for c in ("others_busy_cores", "others_busy_cores_before")):
        text.append("This run did not record the machine's load, so a busy spell cannot be told from a slow "
                    "implementation.")
    elif not busy_run:
        text.append(f"No figure was taken on a busy machine (other processes kept at most "
                    f"{fmt(busiest(summary, rounds), '.2f')} cores busy around any worker).")
    return [" ".join(text)]


def noise_sentence(floor):
    """What the reference against itself says: the noise floor, or that this run has none."""
    if floor is None:
        return (f"No noise floor: {REFERENCE} did not run twice in two or more rounds, so no difference can be "
                "told from the noise of the machine.")
    ratio, lo, hi, f = floor
    return (f"Noise floor: {REFERENCE} against itself (a second process in every round) measured {ratio:.2f}x "
            f"({lo:.2f}–{hi:.2f}), so a ratio whose interval reaches within {f:.0%} of 1.00x is called "
            f"\"no measurable difference\".")


def sweep_doubts(sweep, summary, rounds):
    """{impl: reason} for the sweep rows that cannot be read as findings: taken on a busy machine, or
    the sweep's figure at the run's hidden size more than DISAGREE away from the rounds'."""
    out = {}
    for impl, group in sweep.groupby("impl", sort=False):
        loads = [others_busy(r) for r in group.to_dict("records") if is_busy(r)]
        if loads:
            out[impl] = f"measured beside {max(loads):.1f} busy cores"
    got = speeds(summary, rounds)
    H = summary["hidden_size"].iloc[0] if "hidden_size" in summary and not summary.empty else None
    at_h = sweep[(sweep["hidden_size"] == H) & (sweep["status"] == "ok")] if H is not None else sweep.iloc[0:0]
    for r in at_h.to_dict("records"):
        other = got.get(r["impl"], (None,))[0]
        if other and not missing(r.get("chars_per_s")) and max(r["chars_per_s"] / other, other / r["chars_per_s"]) > DISAGREE:
            out[r["impl"]] = "; ".join(filter(None, [out.get(r["impl"]), f"at H={H} the sweep measured "
                                                     f"{fmt(r['chars_per_s'])} chars/s, the rounds {fmt(other)}"]))
    return out


# ---------------------------------------------------------------------------------------------
# Interleaved rounds: ratios taken within a round, so a slow spell hits both sides

def rounds_section(rounds, env=None):
    """The rounds table, every throughput figure's source: per implementation its chars/s in each
    round, the median, the median of its per-round ratios to REFERENCE with the 95 % bootstrap
    interval and verdict, its timed steps, and the noise floor (benchmarks/run.py, rounds.csv)."""
    if rounds.empty:
        return []
    run = (env or {}).get("run", {})
    figures, floor = throughput_figures(rounds)
    n = int(rounds["round"].max())
    rows = []
    for impl, group in rounds.groupby("impl", sort=False):
        ok = group[group["status"] == "ok"]
        speeds = {int(r["round"]): fmt(r["chars_per_s"]) for r in ok.to_dict("records")}
        busy = [str(int(r["round"])) for r in group.to_dict("records") if is_busy(r)]
        t = figures.get(impl)
        if impl == NOISE and floor:
            ratio, verdict = f"{floor[0]:.2f}x ({floor[1]:.2f}–{floor[2]:.2f})", "the noise floor"
        else:
            ratio, verdict = interval(t), (t.verdict if t else "")
        rows.append({"impl": f"`{impl}`", **{k: speeds.get(k, "–") for k in range(1, n + 1)},
                     "busy": ", ".join(busy) if busy else "none" if "others_busy_cores" in rounds else "not recorded",
                     "median": fmt(ok["chars_per_s"].median()) if not ok.empty else "–", "ratio": ratio,
                     "verdict": verdict, "steps": fmt(ok["timed_steps"].median(), ".0f") if "timed_steps" in ok
                     and not ok.empty else "–"})
    return ["", "### Throughput in interleaved rounds", "",
            f"Every throughput in this report, its plot and the README's table comes from here. After the main "
            f"runs, every implementation that passed its checks ran again in a fresh process, {n} times over, in "
            f"an order shuffled anew each round (seed {run.get('rounds_seed', '?')}, recorded in rounds.csv's "
            f"position column), with {REFERENCE} run twice per round (`{NOISE}`): warm-up steps left out, then "
            f"at most {run.get('round_iters', '?')} timed steps or {run.get('budget', '?')} s (median step). Each "
            f"ratio to {REFERENCE} is taken within one round, from runs seconds apart; its {LEVEL:.0%} interval "
            f"resamples the rounds (bootstrap, 10,000 resamples, fixed seed). " + noise_sentence(floor), "",
            md_table(rows, [("impl", "implementation")] + [(k, f"round {k} chars/s") for k in range(1, n + 1)]
                     + [("median", "median chars/s"), ("ratio", f"ratio to {REFERENCE} ({LEVEL:.0%} interval)"),
                        ("verdict", "verdict"), ("steps", "timed steps per round (median)"),
                        ("busy", "rounds on a busy machine")]), ""]


# ---------------------------------------------------------------------------------------------
# The lesson against the tuned code, and Keras 3's backends

def speeds(summary, rounds):
    """{impl: (chars/s, ratio to REFERENCE, source)} of the rows that passed their checks, from the
    rounds alone (benchmarks/stats.py): the one set of throughput figures."""
    figures, _ = throughput_figures(rounds)
    ok = set(summary[summary["status"] == "ok"]["impl"]) if not summary.empty else set()
    return {k: (t.chars_per_s, t.ratio, f"median of {t.rounds} rounds") for k, t in figures.items() if k in ok}


def relative(a, b):
    """How many times faster speeds() entry a is than b: the quotient of their within-round ratios to
    REFERENCE (the rounds' one estimator), or of their chars/s where a ratio is missing."""
    return a[1] / b[1] if a[1] and b[1] and not (missing(a[1]) or missing(b[1])) else a[0] / b[0]


def throughput_figures(rounds):
    """benchmarks.stats.throughput of rounds.csv: ({impl: Throughput}, noise floor or None)."""
    if rounds.empty:
        return {}, None
    rows = rounds.astype(object).where(rounds.notna(), None).to_dict("records")
    return throughput(rows, REFERENCE)


def interval(t):
    """'0.55x (0.54–0.56)': a ratio and its 95 % interval, or '–'."""
    if t is None or missing(t.ratio):
        return "–"
    return f"{t.ratio:.2f}x" + ("" if missing(t.lo) else f" ({t.lo:.2f}–{t.hi:.2f})")


def lesson_section(summary, rounds):
    """Per framework, the lesson path (cell) against its tuned path (fast): what readability costs."""
    got = speeds(summary, rounds)
    rows = []
    for framework in ("numpy", "torch", "keras"):
        suffix = "@tensorflow" if framework == "keras" else ""
        cell, fast = got.get(f"{framework}-cell{suffix}"), got.get(f"{framework}-fast{suffix}")
        if not (cell and fast):
            continue
        rows.append({"framework": framework, "cell": fmt(cell[0]), "fast": fmt(fast[0]),
                     "gain": fmt(relative(fast, cell), ".2f", "x"),
                     "source": cell[2]})
    if not rows:
        return []
    return ["## The lesson against the tuned code", "",
            "Each framework's `model.py` is written to be read (`cell`: the gate equations plainly, rows "
            "(B, H), one step at a time); its `fast.py` is the same model tuned for speed (`fast`: see "
            "the README's performance section for each trick). Both compute the same numbers (the "
            "equivalence tests hold both to the same tolerances); this is what readability costs.", "",
            md_table(rows, [("framework", "framework"), ("cell", "lesson (cell) chars/s"),
                            ("fast", "tuned (fast) chars/s"), ("gain", "fast / cell"), ("source", "from")]), ""]


def backends_section(summary, rounds):
    """The same keras_impl code on each Keras 3 backend, beside native PyTorch and numpy."""
    if "backend" not in summary or not (summary["framework"] == "keras").any():
        return []
    got = speeds(summary, rounds)
    rows = []
    for r in summary.to_dict("records"):
        if r["framework"] == "keras" or r["impl"] in (REFERENCE, "numpy-cell", "numpy-fast", "torch-cell"):
            speed = got.get(r["impl"])
            rows.append({"impl": f"`{r['impl']}`", "backend": r.get("backend") if isinstance(r.get("backend"), str)
                         and r.get("backend") else "(native)",
                         "chars": fmt(speed[0]) if speed else "–",
                         "ratio": fmt(speed[1], ".2f", "x") if speed and speed[1] else "–",
                         "first": fmt(r.get("time_to_first_step_s"), ".1f"), "rss": fmt(r.get("peak_rss_mb")),
                         "status": r.get("status", "")})
    lines = ["## Keras 3 backends", "",
             "The same `keras_impl/model.py` (keras.ops, `compile` and `train_on_batch`) on TensorFlow, JAX "
             "and PyTorch, beside native PyTorch and numpy; `keras-fast@tensorflow` is the TensorFlow-tuned "
             "cell of `keras_impl/fast.py`. Throughput is the rounds' median where the rounds measured it.", "",
             md_table(rows, [("impl", "implementation"), ("backend", "backend"), ("chars", "chars/s"),
                             ("ratio", f"vs {REFERENCE}"), ("first", "first step s (tracing, compiling)"),
                             ("rss", "peak RSS MB"), ("status", "status")]), ""]
    keras = {k: v for k, v in got.items() if k.startswith("keras-") and "@" in k}
    idiomatic = {k: v for k, v in keras.items() if not k.startswith("keras-fast")}
    if idiomatic:
        best = max(idiomatic, key=lambda k: idiomatic[k][0])
        worst = min(idiomatic, key=lambda k: idiomatic[k][0])
        lines.append(f"Fastest idiomatic Keras row: `{best}` ({fmt(idiomatic[best][0])} chars/s); slowest: "
                     f"`{worst}` ({fmt(idiomatic[worst][0])} chars/s, {relative(idiomatic[best], idiomatic[worst]):.1f}x "
                     f"slower).")
        if "keras-fast@tensorflow" in keras and "keras-cell@tensorflow" in keras:
            fast, cell = keras["keras-fast@tensorflow"], keras["keras-cell@tensorflow"]
            lines.append(f" The tuned TensorFlow cell runs at {relative(fast, cell):.2f}x the idiomatic cell on the same "
                         f"backend, and {relative(fast, idiomatic[best]):.2f}x the fastest idiomatic row: what the "
                         f"idiomatic code costs.")
        lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------
# Memory: what the step adds to the idle process, against the analytic bound

def allocator(env):
    """The workers' allocator as environment.json records it (benchmarks/worker.py, malloc_env)."""
    if env.get("malloc") == "steady":
        return ("*steady* (`--malloc steady`, freed memory kept for the next step: "
                + ", ".join(f"{k}={v}" for k, v in env.get("malloc_env", {}).items()) + ")")
    return "the machine's default (`--malloc default`)" if env.get("malloc") == "default" else "not recorded"


def memory_bound_mb(row):
    """benchmarks.flops.activation_bytes for the row's config in MB; None if the row lacks a field."""
    fields = ("vocab_size", "hidden_size", "num_layers", "batch_size", "seq_length", "dtype", "optimizer")
    if any(missing(row.get(k)) for k in fields):
        return None
    try:
        config = Config(**{k: row[k] if k in ("dtype", "optimizer") else int(row[k]) for k in fields})
    except (ValueError, TypeError):  # a hand-edited summary.csv: no bound rather than no report
        return None
    return activation_bytes(config) / MB


def memory_rows(summary):
    """One row per implementation: the resident memory at three moments, the bound, and the goal.
    Runs from before a figure was recorded show n/a where it is needed."""
    rows = []
    for r in summary.to_dict("records"):
        idle, peak, bound = r.get("idle_rss_mb"), r.get("peak_rss_mb"), memory_bound_mb(r)
        warm, timed = r.get("warm_rss_mb"), r.get("timed_peak_rss_mb")
        added = None if missing(idle) or missing(peak) else peak - idle
        ratio = None if added is None or not bound else added / bound
        step = None if missing(warm) or missing(timed) or not bound else (timed - warm) / bound
        na = lambda x, spec: "n/a" if missing(x) else fmt(x, spec)  # noqa: E731
        rows.append({"impl": f"`{r['impl']}`", "idle": na(idle, ",.0f"), "warm": na(warm, ",.0f"),
                     "timed": na(timed, ",.0f"), "peak": na(peak, ",.0f"), "bound": na(bound, ",.1f"),
                     "ratio": na(ratio, ".2f"), "step": na(step, ".2f"),
                     "within": "n/a" if ratio is None else "yes" if ratio <= MEMORY_GOAL else "no"})
    return rows


def memory_section(summary):
    if summary.empty:
        return []
    return [
        "Resident memory of each worker at three moments: idle, just before the first training step "
        "(the framework's libraries, the data and the built model); warm, between two steps after the "
        "warm-up (adds what stays: traced or compiled graphs, optimizer state, memory the allocator "
        "keeps); and the peak, of the timed steps alone and of the whole run (which includes the first "
        "step's tracing and compiling). The bound is the memory a step must hold whatever the framework: "
        "the activations kept for backward, the logits and their softmax, and the parameters, their "
        f"gradients and the optimizer's state. Goal: peak − idle within {MEMORY_GOAL}x the bound. "
        "(timed peak − warm) / bound is what one step adds on top of what stays resident. "
        "MB = 2^20 bytes; n/a: a run from before that figure was recorded.", "",
        md_table(memory_rows(summary), [
            ("impl", "implementation"), ("idle", "idle MB"), ("warm", "warm MB"),
            ("timed", "peak, timed steps MB"), ("peak", "peak, whole run MB"), ("bound", "analytic bound MB"),
            ("ratio", "(peak − idle) / bound"), ("within", f"within {MEMORY_GOAL}x"),
            ("step", "(timed peak − warm) / bound")]), "",
        f"The bound: `{MEMORY_FORMULA}` (benchmarks/flops.py).", ""]


# ---------------------------------------------------------------------------------------------
# The roofline (benchmarks/roofline.py): the two ceilings, and the refusal of a share above either

CEILING_TITLES = {"fma": "share of FMA ceiling", "matmul": "share of matmul rate"}


def report_ceilings(env, gemm):
    """{name: (GFLOP/s, what)}: the run's two measured ceilings; a run from before the roofline has only
    gemm.csv's best product (the matmul ceiling)."""
    got = {k: tuple(v) for k, v in (env.get("roofline") or {}).get("ceilings", {}).items()}
    if not got and not gemm.empty and (gemm["status"] == "ok").any():
        got["matmul"] = (float(gemm[gemm["status"] == "ok"]["gflops"].max()), "the measured matmul rate (gemm.csv)")
    return got


def model_rates(summary, sweep):
    """{"what", "gflops"} of every throughput figure: model FLOPs per second of each row and sweep size."""
    rows = [{"what": f"{r['impl']}'s model FLOPs", "H": r.get("hidden_size"), "gflops": r["chars_per_s"] * r["flops_per_char"] / 1e9}
            for r in summary.to_dict("records") if not missing(r.get("chars_per_s")) and not missing(r.get("flops_per_char"))]
    if not sweep.empty and not summary.empty and "chars_per_s" in sweep:
        V, L = int(summary["vocab_size"].iloc[0]), int(summary["num_layers"].iloc[0])
        rows += [{"what": f"{r['impl']}'s model FLOPs at H={int(r['hidden_size'])} (sweep)", "H": int(r["hidden_size"]),
                  "gflops": r["chars_per_s"] * flops_per_char(V, int(r["hidden_size"]), L) / 1e9}
                 for r in sweep.to_dict("records") if not missing(r.get("chars_per_s"))]
    return rows


def check_roofline(summary, sweep, env, gemm):
    """ShareError (roofline.check_shares) when a model's FLOP rate passes either ceiling, or a library's
    measured matrix multiply passes the FMA ceiling; else the ceilings."""
    ceilings = report_ceilings(env, gemm)
    matmul = [{"what": f"{r['lib']}'s {r['m']}x{r['k']}x{r['n']} matmul", "gflops": r["gflops"], "against": ["fma"]}
              for r in (env.get("roofline") or {}).get("matmul", []) if r.get("status") == "ok" and r.get("gflops")]
    roofline.check_shares(model_rates(summary, sweep) + matmul, ceilings)
    return ceilings


def share(gflops, ceilings, name):
    got = ceilings.get(name)
    return fmt(100 * gflops / got[0], ".1f", " %") if got and got[0] and not missing(gflops) else "–"


def roofline_section(env, ceilings, rates):
    """The CPU record, the derived ceiling and its assumptions, the FMA microbenchmark, every library's
    matrix multiply by shape, and each throughput's share of both ceilings."""
    roof = env.get("roofline") or {}
    if not roof:
        return ["## Roofline", "", "This run measured no roofline (it predates benchmarks/roofline.py); shares are "
                "against the best of gemm.csv only.", ""]
    cpu, micro = env.get("cpu", {}), roof.get("microbenchmark") or {}
    clock, steal = micro.get("clock") or {}, cpu.get("steal") or {}
    md = ["## Roofline", "",
          f"**CPU**: {cpu.get('model_name')} ({cpu.get('vendor')}, family {cpu.get('family')}, model "
          f"{cpu.get('model_number')}, stepping {cpu.get('stepping')}); {cpu.get('physical_cores')} physical cores, "
          f"{cpu.get('smt_per_core')} hardware thread(s) each, {cpu.get('usable_cpus')} usable; flags: "
          f"{', '.join(cpu.get('isa_flags', [])) or 'none recorded'}; clock under load "
          f"{fmt(clock.get('one_core_ghz'), '.2f')} GHz on one core, {fmt(clock.get('all_core_ghz'), '.2f')} GHz on all "
          f"{clock.get('threads', '?')} (mean slice {fmt(clock.get('all_core_mean_ghz'), '.2f')}); /proc/cpuinfo says "
          f"{fmt(cpu.get('cpuinfo_mhz'), '.0f')} MHz; steal over the run "
          + (f"{100 * steal['share']:.2f} % of CPU time" if steal else "not recorded") + "; pins: "
          + (", ".join(f"`{k}={v}`" for k, v in cpu.get("pins", {}).items()) or "none") + ".", ""]
    md += ["**Derived float32 FMA ceiling** = cores x FMA units x lanes x 2 x clock:", ""]
    for d in roof.get("derived", []):
        md.append(f"- {d['isa']}: " + (f"{d['cores']} x {d['fma_units']} x {d['lanes']} x 2 x {d['clock_ghz']:.3f} GHz = "
                                      f"**{d['gflops']:.1f} GFLOP/s**" if d.get("gflops") else "none")
                  + " (" + "; ".join(d["assumptions"]) + ")")
    md.append("")
    if micro.get("fma"):
        derived = {d["isa"]: d for d in roof.get("derived", [])}
        rows = [{"isa": r["isa"], "threads": r["threads"], "best": fmt(r["gflops"], ".1f"), "mean": fmt(r["mean_gflops"], ".1f"),
                 "of": fmt(100 * r["gflops"] / (derived[r["isa"]]["gflops"] * r["threads"] / derived[r["isa"]]["cores"]), ".1f", " %")
                 if derived.get(r["isa"], {}).get("gflops") else "–"} for r in micro["fma"]]
        md += [f"**FMA microbenchmark** ({micro.get('compiler')}; {micro.get('chains')} independent FMA chains per "
               "thread in registers, best short slice per thread):", "",
               md_table(rows, [("isa", "ISA"), ("threads", "threads"), ("best", "GFLOP/s (best slice)"),
                               ("mean", "GFLOP/s (mean slice)"), ("of", "of the derived ceiling")]), ""]
    else:
        md += [f"**FMA microbenchmark**: not run ({micro.get('reason', 'not recorded')}); the FMA ceiling is the derived one.", ""]
    rows = [{**r, "shape": f"{r['shape']}: {r['m']}x{r['k']}x{r['n']}", "gflops": fmt(r.get("gflops"), ".1f"),
             "median": fmt(r.get("median_gflops"), ".1f"), "kernel": r.get("kernel") or "", "fma": share(r.get("gflops"), ceilings, "fma")}
            for r in roof.get("matmul", [])]
    md += ["**Matrix multiply by library and shape** (float32, each library in its own process at "
           f"{roof.get('threads')} threads, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; the LSTM's shapes are "
           "this run's config's; best and median repetition):", "",
           md_table(rows, [("lib", "library"), ("shape", "shape (m x k x n)"), ("gflops", "GFLOP/s (best)"),
                           ("median", "GFLOP/s (median)"), ("fma", "of the FMA ceiling"), ("kernel", "kernel"),
                           ("status", "status")]), ""]
    md.append("**Ceilings**: " + "; ".join(f"{CEILING_TITLES[k][9:]}: {what}, **{g:.1f} GFLOP/s**"
                                             for k, (g, what) in ceilings.items()) + ".")
    if rates:
        md += ["", md_table([{"what": f"`{r['what'].replace(chr(39) + 's model FLOPs', '')}`", "gflops": fmt(r["gflops"], ".1f"),
                              **{k: share(r["gflops"], ceilings, k) for k in CEILING_TITLES}} for r in rates],
                            [("what", "implementation"), ("gflops", "model GFLOP/s")] + list(CEILING_TITLES.items()))]
    md += ["", "Model GFLOP/s = chars/s x FLOPs per character (the formula below). A share above 100 % of either "
           "ceiling would mean a figure is wrong; the report refuses to be written then.", ""]
    return md


# ---------------------------------------------------------------------------------------------
# The report

def what_ran(summary, rounds, run):
    """The header's account of the work: the steps every row trained and was compared at, and the
    steps each row timed in the rounds, and why fewer than asked."""
    if summary.empty:
        return ""
    c = summary.iloc[0]
    total = int(c["iters"]) + int(c["warmup"]) + 1 if not missing(c.get("iters")) else "?"
    text = (f"**Compared:** every implementation trained the same {total} steps (the first, {c.get('warmup')} "
            f"warm-up and {c.get('iters')} more) in its main run, whatever they cost; losses, curves and the "
            f"final validation are compared at step {total - 1 if isinstance(total, int) else '?'}.")
    if rounds.empty:
        return text + " **Timed:** no rounds were run, so this report has no throughput."
    figures, _ = throughput_figures(rounds)
    n = int(rounds["round"].max())
    timed = ", ".join(f"`{k}` {fmt(t.timed_steps, '.0f')}" + (f" ({t.capped} of {t.rounds} rounds stopped by "
                                                              f"the {run.get('budget', '?')} s budget)" if t.capped else "")
                      for k, t in figures.items())
    return text + (f" **Timed:** throughput from {n} interleaved rounds of fresh processes (the reference twice "
                   f"per round), each {c.get('warmup')} warm-up steps and then at most {run.get('round_iters', '?')} "
                   f"timed steps or {run.get('budget', '?')} s; timed steps per round (median): {timed}.")


HOW_TO_READ = """\
Each implementation (a framework and a path: `layer` is the library's own LSTM, `cell` the gate
equations written out plainly in that framework's operations (the lesson, `model.py`), `fast` the
same model tuned for speed (`fast.py`); Keras once per backend, `@tensorflow`, `@jax`, `@torch`)
was trained in its own process, from the same initial weights, on the same batches, with the same
number of threads. So:

- **The loss curves should lie on top of each other.** Same weights, same data, same optimizer
  settings: any visible gap is a bug, not a framework trait (tiny float32 differences aside).
- **Throughput** is characters per second during training (forward, backward and optimizer step),
  from the median step time of fresh processes run in shuffled, interleaved rounds; each ratio to
  torch-layer carries a 95 % interval over the rounds, and a ratio whose interval reaches into the
  noise floor (torch-layer against a second torch-layer process) is "no measurable difference".
  Higher is better. Compare implementations within one report rather than across reports.
- **Time to first step** is what you wait before training starts: importing the framework,
  building the model and the first step, which includes tracing/compiling where the framework
  does that (Keras' `tf.function`).
- **Peak memory** is the worker process's maximum resident set (framework libraries included);
  the memory table holds what the training step itself adds against what it must keep.
- **Share of peak** compares the FLOPs a step must do with two measured ceilings (see Roofline):
  the FMA rate of this CPU's cores and the best matrix multiply any library reaches; a small LSTM
  with B rows per step cannot come near either, so read it as headroom.
"""

OPTIMIZER_NOTES = """\
The frameworks' own optimizers are configured to the same numbers (Adam beta1=0.9, beta2=0.999,
eps=1e-8; Adagrad eps=1e-10, initial accumulator 0; SGD without momentum; clipping by the global
L2 norm over all gradients). Two formulas still differ between the frameworks:

- **Adam**: PyTorch (and numpy) follow the Adam paper, `w -= lr * m_hat / (sqrt(v_hat) + eps)`
  with `m_hat = m / (1 - b1^t)`, `v_hat = v / (1 - b2^t)`. Keras puts epsilon outside the bias
  correction: `alpha_t = lr * sqrt(1 - b2^t) / (1 - b1^t)`, `w -= alpha_t * m / (sqrt(v) + eps)`.
  The two agree except where sqrt(v_hat) is comparable to eps.
- **Clipping**: `torch.nn.utils.clip_grad_norm_` scales by `max_norm / (norm + 1e-6)`; Keras'
  `global_clipnorm` by `max_norm / norm`.

numpy carries both formulas (`CharLSTM(..., formula="pytorch" | "keras")`); the equivalence tests
hold to 1e-9 in float64 with the matching one.
"""


def write_report(out):
    out = Path(out)
    if not (out / "summary.csv").exists():
        raise FileNotFoundError(f"no summary.csv in {out}; run `python -m benchmarks.run --out {out}` first.")
    summary = read_csv(out / "summary.csv")
    steps = read_csv(out / "steps.csv")
    sweep = read_csv(out / "sweep.csv")
    gemm = read_csv(out / "gemm.csv")
    env = json.loads((out / "environment.json").read_text()) if (out / "environment.json").exists() else {}
    samples = read_samples(out / "samples.txt")
    levers = read_csv(out / "levers.csv")
    threads = read_csv(out / "threads.csv")
    rounds = read_csv(out / "rounds.csv")
    ceilings = check_roofline(summary, sweep, env, gemm)  # refuses before any file is written

    images = {
        "loss": plot_losses(steps, out),
        "throughput": plot_throughput(summary, rounds, out),
        "sweep": plot_sweep(sweep, out),
        "first": plot_bars(summary, "time_to_first_step_s", "seconds",
                           "Time to first step (import + build + first train_step)", out, "first_step.png"),
        "memory": plot_bars(summary, "peak_rss_mb", "MB", "Peak resident memory of the worker process",
                            out, "memory.png"),
    }
    image = lambda key, alt: f"![{alt}]({images[key]})\n" if images[key] else ""  # noqa: E731

    c = summary.iloc[0] if not summary.empty else {}
    cfg = env.get("config", {})
    run = env.get("run", {})
    cpu = env.get("cpu", {})
    peak = report_ceilings(env, gemm).get("matmul", (None,))[0]
    md = ["# LSTM Rosetta: benchmark report", ""]
    md.append(
        f"Character-level LSTM, V={c.get('vocab_size')} H={c.get('hidden_size')} L={c.get('num_layers')} "
        f"B={c.get('batch_size')} T={c.get('seq_length')}, {c.get('dtype')}, {c.get('optimizer')} "
        f"(lr {c.get('learning_rate')}, clip {c.get('clip_norm')}), corpus `{run.get('corpus', '?')}`; "
        f"{c.get('threads')} threads on {cpu.get('model', '?')} ({cpu.get('logical_cores', '?')} cores); "
        f"{env.get('date', '')}. " + what_ran(summary, rounds, run))
    md += ["", *findings(summary, rounds, steps, env)]
    md += ["", "## How to read this", "", HOW_TO_READ]

    # Results table: throughput from the rounds, everything else from the main runs
    figures, _ = throughput_figures(rounds)
    rows = []
    for r in summary.to_dict("records"):
        t = figures.get(r["impl"]) if r.get("status") == "ok" else None
        rows.append({
            "impl": f"`{r['impl']}`" + (" ⚠" if is_busy(r) else ""), "chars": fmt(t.chars_per_s) if t else "–",
            "ratio": interval(t), "verdict": t.verdict if t else "", "ms": fmt(t.step_ms, ".1f") if t else "–",
            "first": fmt(r.get("time_to_first_step_s"), ".1f"), "rss": fmt(r.get("peak_rss_mb")),
            "faults": fmt(r.get("page_faults_per_step")), "sys": fmt(r.get("system_ms_per_step"), ".1f"),
            **{k: share(t.chars_per_s * r["flops_per_char"] / 1e9 if t else None, ceilings, k) for k in CEILING_TITLES},
            "loss": fmt(r.get("final_loss"), ".4f"), "val": fmt(r.get("final_val_loss"), ".4f"),
            "numpy": fmt(r.get("numpy_val_loss"), ".4f"), "step": fmt(r.get("final_step"), ".0f"),
            "device": r.get("device", ""), "status": r.get("status", ""),
        })
    md += ["## Results", "", md_table(rows, [
        ("impl", "implementation"), ("chars", "chars/s"), ("ratio", f"vs {REFERENCE} ({LEVEL:.0%} interval)"),
        ("verdict", "verdict"), ("ms", "step ms (median)"), ("first", "first step s"),
        ("rss", "peak RSS MB"), ("faults", "page faults / step"), ("sys", "kernel ms / step"),
        *CEILING_TITLES.items(), ("loss", "final loss"), ("step", "final step"),
        ("val", "final val loss"), ("numpy", "numpy's val loss"), ("device", "device"), ("status", "status")]), ""]
    md.append(
        f"chars/s, step ms and \"vs {REFERENCE}\" are the interleaved rounds' (below), the one set of "
        "throughput figures. Every other column is the main run's: every row trained the same steps from "
        "the same weights on the same batches, and its final loss (the mean training loss over the last "
        "10 % of the steps, at most 20) and final validation loss are both taken at that same last step. "
        "Before any figure is published each row is checked: the loss finite and falling; its final "
        "weights re-scored by numpy's forward on the same validation batches (\"numpy's val loss\"; more "
        f"than {VAL_TOLERANCE:g} apart, float32 rounding's margin, and the row is broken); a final "
        "validation at the last step; and its sample tested against what those weights write "
        f"(benchmarks/checks.py). A row that fails, crashes or times out has its reason in the status "
        "column, no throughput and no place in the findings. Page faults and kernel (system) time per step "
        "are the main run's over its timed steps: with the machine's allocator a framework can spend a "
        "third of its step having the kernel hand it fresh zeroed pages, and whether it does "
        "changes from one process to the next; this run's allocator: "
        + allocator(env) + f". ⚠: other processes kept more than {BUSY_CORES:g} cores busy just before or "
        "while this row's main run went (summary.csv's others_busy_cores).")
    md += ["", image("throughput", "throughput per implementation")]
    md += rounds_section(rounds, env)
    md += lesson_section(summary, rounds)
    md += backends_section(summary, rounds)

    # Loss curves
    md += ["## Loss curves", "", image("loss", "loss curves of all implementations")]
    md.append(
        "Validation loss: the mean cross-entropy over the first "
        f"{run.get('val_batches', '?')} batches of the validation text (the last 10 % of the corpus), "
        "with the LSTM state carried through them from zeros, as in training; measured every "
        f"{run.get('val_every', '?')} steps and at the end, outside the step timing.")
    if not steps.empty:
        wide = steps.pivot_table(index="step", columns="impl", values="loss")
        spread = lambda df: (df.max(axis=1) - df.min(axis=1)).max() if df.shape[1] > 1 else None  # noqa: E731
        paper = [c for c in wide.columns if not c.startswith("keras-")]  # PyTorch's Adam formula
        if spread(wide) is not None:
            first = wide.iloc[:10]  # same weights, same batches: here only rounding and formulas differ
            md.append(
                f"\nLargest difference between the implementations' losses at the same step: "
                f"{spread(first):.2e} over the first {len(first)} steps, {spread(wide):.2e} over all "
                f"{len(wide)}" + (
                    f"; among those using PyTorch's Adam formula ({', '.join(paper)}): "
                    f"{spread(first[paper]):.2e} and {spread(wide[paper]):.2e}. Keras' Adam puts epsilon "
                    f"outside the bias correction (see Optimizers below), which moves its curves in the "
                    f"first steps, while sqrt(v_hat) is still small: a formula difference, not a bug"
                    if len(paper) > 1 and len(paper) < wide.shape[1] else "") +
                ". Over many steps float32 rounding differences (the frameworks sum in different orders) "
                "grow, as in any chaotic training run, so the curves agree closely at first and "
                "statistically later.")
    md.append("")

    # Sweep
    if images["sweep"]:
        md += ["## Throughput against hidden size", "", image("sweep", "throughput against hidden size")]
        piv = sweep[sweep["status"] == "ok"].pivot_table(index="hidden_size", columns="impl",
                                                         values="chars_per_s", sort=False)
        rows = [{"H": H, **{impl: fmt(piv.loc[H, impl]) for impl in piv.columns}} for H in piv.index]
        md += [md_table(rows, [("H", "H")] + [(i, f"`{i}` chars/s") for i in piv.columns]), ""]
        md.append(
            f"Short throughput-only runs (a fresh model per size; the first step and "
            f"one warm-up step left out, then at most {run.get('sweep_iters', '?')} timed steps or "
            f"{run.get('sweep_budget', '?')} s, median step). Other settings as above.")
        failed = sweep[sweep["status"] != "ok"]
        if not failed.empty:
            md.append("\nNot measured: " + "; ".join(
                f"`{r['impl']}` H={r['hidden_size']}: {r['status']}" for r in failed.to_dict("records")) + ".")
        md += ["", *sweep_reading(piv, c.get("vocab_size"), c.get("num_layers"), sweep_doubts(sweep, summary, rounds))]
        md.append("")

    # Start-up and memory
    md += ["## Time to first step and memory", "", image("first", "time to first step"),
           image("memory", "peak memory"), *memory_section(summary)]

    # FLOPs and peak
    md += ["## FLOPs and the matrix-multiply peak", ""]
    if not summary.empty:
        md.append(f"FLOPs per character of one training step: **{int(c['flops_per_char']):,}**, from "
                  f"`{FORMULA}`.")
    if not gemm.empty:
        md += ["", md_table([{**g, "gflops": fmt(g.get("gflops"), ".1f"), "median_ms": fmt(1e3 * g["median_s"], ".1f")
                              if not missing(g.get("median_s")) else "–"} for g in gemm.to_dict("records")],
                            [("lib", "library"), ("n", "n"), ("threads", "threads"), ("reps", "reps"),
                             ("median_ms", "median ms"), ("gflops", "GFLOP/s"), ("status", "status")])]
        md.append(
            f"\nEach library's float32 (n, n) @ (n, n) product, best repetition after two warm-up products, at the "
            f"same thread count; the matmul ceiling is the best product of any library and shape: "
            f"**{fmt(peak, '.1f')} GFLOP/s**. Share = chars/s x FLOPs per character / ceiling.")
    md.append("")
    md += roofline_section(env, ceilings, model_rates(summary, sweep))

    # Levers and threads (python -m benchmarks.levers)
    if not levers.empty:
        if "ratio" not in levers:  # a hand-written levers.csv may leave it out
            levers["ratio"] = levers["after_chars_per_s"] / levers["before_chars_per_s"]
        rows = [{**r, "before": fmt(r.get("before_chars_per_s")), "after": fmt(r.get("after_chars_per_s")),
                 "ratio": fmt(r.get("ratio"), ".2f", "x"), "impl": f"`{r.get('impl')}`",
                 "kept": "" if missing(r.get("kept")) else r.get("kept"),
                 "note": "" if missing(r.get("note")) else r.get("note")}
                for r in levers.to_dict("records")]
        md += ["## What made it fast", "",
               "Each lever measured on its own, in its own worker processes (`python -m benchmarks.levers`): "
               "\"before\" is the simpler code a first version would have had, made by patching the shipped "
               "module in the worker or, for a change of a whole file's layout, by running that file as it "
               "was at an earlier commit (benchmarks/levers.py), \"after\" the faster one; ratio = after / before; "
               "kept = whether the shipped code uses \"after\" (\"bench\": a setting of the benchmark itself, "
               "such as the allocator every worker runs with). Both sides start from the same weights and "
               "batches, and their losses over the first and warm-up steps agree to 1e-4 (the note says so).", "",
               md_table(rows, [("lever", "lever"), ("impl", "implementation"), ("before", "before chars/s"),
                               ("after", "after chars/s"), ("ratio", "ratio"), ("kept", "kept"), ("note", "note")]), ""]
    if not threads.empty:
        piv = threads.pivot_table(index="impl", columns="threads", values="chars_per_s", sort=False)
        lo, hi = min(piv.columns), max(piv.columns)
        rows = [{"impl": f"`{impl}`", **{n: fmt(piv.loc[impl, n]) for n in piv.columns},
                 "ratio": fmt(piv.loc[impl, hi] / piv.loc[impl, lo], ".2f", "x")} for impl in piv.index]
        md += [f"## Throughput at {lo} and {hi} threads", "",
               md_table(rows, [("impl", "implementation")] + [(n, f"chars/s, {n} thread{'s' * (n > 1)}")
                                                              for n in piv.columns]
                        + [("ratio", f"{hi} threads / {lo}")]), "",
               "Each implementation in its own process with every thread pool (BLAS, OpenMP, TensorFlow's) "
               "set to that count; same configuration and steps as the lever runs.", ""]

    # Samples
    if samples:
        md += ["## Generated text", "",
               "A short sample from each implementation after its main run (from a newline, temperature 0.8, "
               "the config's seed): after a few hundred steps expect Shakespeare-shaped noise, not Shakespeare. "
               "One seeded draw from an early model can wander into a state it never learned (a rare first "
               "character, then near-flat odds over capitals and symbols) and stay there; whether the text is "
               "what the row's final weights write is tested, not judged by eye: z is the sample's surprise "
               "under numpy's forward of those weights (about 0 for their own text, far below 0 for any "
               "other; broken below the self-check's limit), and nats/char its mean cross-entropy there. Rows "
               "with the same arithmetic after the same steps write the same text.", ""]
        checks = {r["impl"]: r for r in summary.to_dict("records")}
        for impl, text in samples.items():
            r = checks.get(impl, {})
            said = (f" (z = {r['sample_z']:.1f}, {r['sample_nll']:.2f} nats/char under numpy's forward)"
                    if not missing(r.get("sample_z")) else "")
            md += [f"**{impl}**{said}", "", "```", text.replace("```", "'''"), "```", ""]

    md += ["## Optimizers: where the formulas differ", "", OPTIMIZER_NOTES]

    # Environment
    pk = env.get("packages", {})
    pools = env.get("blas", {}).get("threadpools", [])
    git = env.get("git", {})
    data = env.get("data", {})
    facts = [
        ("date", env.get("date")), ("CPU", f"{cpu.get('model')} ({cpu.get('logical_cores')} logical cores, "
                                           f"{cpu.get('usable_cores')} usable)"),
        ("threads", f"{env.get('threads')} (env: " + ", ".join(
            f"{k}={v}" for k, v in env.get("thread_env", {}).items() if "THREADS" in k) + ")"),
        ("allocator", allocator(env)),
        ("python", f"{env.get('python')} on {env.get('platform')}"),
        ("packages", ", ".join(f"{k} {v}" for k, v in pk.items() if v)),
        ("BLAS (numpy)", "; ".join(f"{p.get('internal_api')} {p.get('version')} "
                                   f"({p.get('threading_layer')}, {p.get('architecture')}, "
                                   f"{p.get('num_threads')} threads)" for p in pools) or "?"),
        ("OpenBLAS pinned", "not recorded" if "openblas_env" not in env.get("blas", {}) else
         ", ".join(f"{k}={v}" for k, v in env["blas"]["openblas_env"].items())
         or "no (OpenBLAS chose its kernel for this CPU)"),
        ("devices", ", ".join(f"{k}: {v}" for k, v in env.get("devices", {}).items())),
        ("git commit", f"{git.get('commit')}{' (with uncommitted changes)' if git.get('dirty') else ''}"),
        ("data", f"{data.get('corpus')}: {data.get('chars', 0):,} characters, V={data.get('vocab_size')}, "
                 f"{data.get('train_chars', 0):,} train / {data.get('val_chars', 0):,} validation; "
                 f"same batches in every worker: {data.get('same_batches_in_every_worker')}, "
                 f"same initial weights: {data.get('same_weights_in_every_worker')}"),
        ("config", ", ".join(f"{k}={v}" for k, v in cfg.items())),
    ]
    md += ["## Environment", "", md_table([{"k": k, "v": v} for k, v in facts], [("k", "what"), ("v", "value")]),
           "", "Everything above is in `environment.json`; the per-step numbers are in `steps.csv`, "
           "one row per implementation in `summary.csv`, the sweep in `sweep.csv`, the matrix-multiply "
           "measurement in `gemm.csv`.", ""]

    text = "\n".join(md)
    (out / "REPORT.md").write_text(text, encoding="utf-8")
    return out / "REPORT.md"


# What each row is, for the README's table (readme_table)
WHAT_IT_IS = {
    "torch-layer": "`nn.LSTM`", "torch-cell": "the lesson's `nn.Module` cell",
    "numpy-cell": "the lesson: backward by hand", "numpy-fast": "the tuned numpy (`numpy_impl/fast.py`)",
    "keras-fast@tensorflow": "the TensorFlow-tuned cell (`keras_impl/fast.py`)",
    **{f"keras-layer@{b}": f"`keras.layers.LSTM` on {n}" for b, n in
       (("tensorflow", "TensorFlow"), ("jax", "JAX"), ("torch", "PyTorch"))},
    **{f"keras-cell@{b}": f"the lesson's Keras cell on {n}" for b, n in
       (("tensorflow", "TensorFlow"), ("jax", "JAX"), ("torch", "PyTorch"))},
}


def readme_table(out):
    """The README's "Findings at a glance" table, from DIR's rounds (the report's own figures): every
    row that passed its checks, fastest first, with its ratio, interval and first step."""
    out = Path(out)
    summary, rounds = read_csv(out / "summary.csv"), read_csv(out / "rounds.csv")
    figures, _ = throughput_figures(rounds)
    first = dict(zip(summary["impl"], summary["time_to_first_step_s"])) if not summary.empty else {}
    got = speeds(summary, rounds)
    rows = [{"impl": f"`{k}`", "what": WHAT_IT_IS.get(k, ""), "chars": fmt(figures[k].chars_per_s),
             "ratio": interval(figures[k]), "verdict": figures[k].verdict, "first": fmt(first.get(k), ".1f")}
            for k in sorted(got, key=lambda k: -got[k][0])]
    return md_table(rows, [("impl", "implementation"), ("what", "what it is"), ("chars", "chars/s"),
                           ("ratio", f"vs {REFERENCE} ({LEVEL:.0%} interval)"), ("verdict", "verdict"),
                           ("first", "first step s")])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                description="Write DIR/REPORT.md and its PNG plots from the benchmark's CSV files.")
    p.add_argument("dir", help="the folder benchmarks.run wrote (e.g. results)")
    p.add_argument("--readme-table", action="store_true",
                   help="print the README's findings table from DIR's rounds instead (the report's own figures)")
    args = p.parse_args(argv)
    try:
        if args.readme_table:
            if not (Path(args.dir) / "summary.csv").exists():
                raise FileNotFoundError(f"no summary.csv in {args.dir}; run `python -m benchmarks.run --out {args.dir}` first.")
            print(readme_table(args.dir))
            return 0
        path = write_report(args.dir)
    except (FileNotFoundError, json.JSONDecodeError, pd.errors.ParserError, RosettaError) as e:
        print(f"python -m benchmarks.report: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
