"""GRID.md and its plots, from the files benchmarks/grid.py wrote (grid.csv, generation.csv,
startup.csv, grid.json) and nothing else.

    python -m benchmarks.grid --report results        # GRID.md and grid_*.png again

Every figure is the median over the fresh processes that measured it (one per repetition), with a
95 % percentile-bootstrap interval of that median (`interval`); a ratio between two
implementations is bootstrapped from its per-repetition ratios (the two processes of one
repetition ran minutes apart at most). A ratio whose interval holds 1 is "no measurable
difference". Throughput "stops growing" at the batch size from which doubling the batch gains
less than GAIN (`stops_growing`). The findings are sentences made from these figures.
"""

import json
import math
from pathlib import Path

import numpy as np

from benchmarks.report import md_table, plt, read_csv, save
from benchmarks.run import BUSY_CORES

GAIN = 0.15  # throughput "stops growing" where doubling the batch gains less than this (15 %)
LEVEL = 0.95  # of every interval


# ---------------------------------------------------------------------------------------------
# The statistics: intervals and where throughput stops growing

def interval(values, stat=np.median, level=LEVEL, resamples=2000, seed=0):
    """(stat, low, high): `stat` of `values` and its percentile bootstrap interval (resamples drawn
    with replacement). With 3 values the interval spans most of them: it says how far apart the
    processes were, no more. (The main benchmark's report may grow its own: one to unify.)"""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(values) < 2:  # one process: a figure, no interval
        return (float(values[0]) if len(values) else math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    stats = stat(values[rng.integers(0, len(values), (resamples, len(values)))], axis=1)
    low, high = np.percentile(stats, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return (float(stat(values)), float(low), float(high))


def stops_growing(batch_sizes, throughputs, gain=GAIN):
    """The batch size from which a larger batch gains less than `gain` per doubling, or None when
    every step of the ladder still gains more (still growing at the largest batch).

    Between neighbours B0 < B1 of the ladder the gain per doubling is (t1 / t0) ** (1 / log2(B1 / B0)) - 1,
    so 1 -> 8 (three doublings) and 128 -> 512 (two) are judged alike."""
    pairs = sorted((b, t) for b, t in zip(batch_sizes, throughputs) if t is not None and np.isfinite(t))
    for (b0, t0), (b1, t1) in zip(pairs, pairs[1:]):
        if (t1 / t0) ** (1 / math.log2(b1 / b0)) - 1 < gain:
            return b0
    return None


def figures(df, keys, column):
    """{keys: (median, low, high)} of `column` over the processes (the rows with status ok); a
    single key is the dict's key itself, not a 1-tuple."""
    ok = df[df["status"] == "ok"].dropna(subset=[column]) if not df.empty else df
    if ok.empty:
        return {}
    return {key[0] if len(keys) == 1 else key: interval(group[column]) for key, group in ok.groupby(keys)}


def ratio(df, column, a, b):
    """(median, low, high) of a's figure over b's, from the repetitions that measured both; df is
    indexed by impl's rows of one shape, with a 'rep' column."""
    ok = df[df["status"] == "ok"].dropna(subset=[column])
    by_rep = ok.pivot_table(index="rep", columns="impl", values=column, aggfunc="median")
    if a not in by_rep or b not in by_rep:
        return (math.nan, math.nan, math.nan)
    return interval((by_rep[a] / by_rep[b]).dropna())


# ---------------------------------------------------------------------------------------------
# Formatting

def k(x):
    return "–" if x is None or not np.isfinite(x) else f"{x / 1e3:,.1f}k" if x >= 1e3 else f"{x:,.0f}"


def with_interval(fig, unit=k):
    median, low, high = fig
    if not np.isfinite(median):
        return "–"
    return f"{unit(median)} [{unit(low)}, {unit(high)}]" if np.isfinite(low) else f"{unit(median)} (1 process)"


def ms(x):
    return "–" if x is None or not np.isfinite(x) else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def seconds(x):
    return "–" if x is None or not np.isfinite(x) else f"{x:.2f}"


def times(x):
    return "–" if x is None or not np.isfinite(x) else f"{x:.2f}x"


def compare(what, best, second, fig, r, unit=k, lower=False):
    """One finding: the best implementation of a workload, its figure, and how far ahead of the next."""
    text = f"{what}: **{best}**, {with_interval(fig, unit)}"
    if second is None:
        return text + " (the only one measured)."
    if not np.isfinite(r[0]):
        return text + f"; against {second} no ratio (not measured in the same repetitions)."
    if r[1] <= 1 <= r[2]:
        return text + f"; no measurable difference from {second} (ratio {with_interval(r, times)})."
    if lower:
        return text + f"; {second}, the next best, takes {with_interval(r, times)} as long."
    return text + f"; {with_interval(r, times)} the throughput of {second}, the next best."


def ranked(figs, lower=False):
    """Implementations ordered best first by median."""
    return sorted((impl for impl in figs if np.isfinite(figs[impl][0])), key=lambda i: figs[i][0], reverse=not lower)


# ---------------------------------------------------------------------------------------------
# Plots: each returns the file name it wrote, or None when there is nothing to draw

def plot_batch(grid, T, threads, out):
    df = grid[(grid["seq_length"] == T) & (grid["threads"] == threads)]
    figs = figures(df, ["impl", "hidden_size", "batch_size"], "chars_per_s")
    impls = list(dict.fromkeys(i for i, _, _ in figs))
    if not impls:
        return None
    cols = min(4, len(impls))
    fig, axes = plt.subplots((len(impls) + cols - 1) // cols, cols, figsize=(3.6 * cols, 3.2 * ((len(impls) + cols - 1) // cols)),
                             sharey=True, squeeze=False)
    for ax, impl in zip(axes.flat, impls):
        for n, H in enumerate(sorted({h for i, h, _ in figs if i == impl})):
            Bs = sorted(b for i, h, b in figs if i == impl and h == H)
            y = np.array([figs[impl, H, b] for b in Bs])
            ax.errorbar(Bs, y[:, 0], yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]], fmt="o-", color=f"C{n}",
                        capsize=3, label=f"H={H}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(impl, fontsize=9)
        ax.set_xlabel("batch size B")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for ax in axes.flat[len(impls):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("characters per second")
    fig.suptitle(f"Training throughput against batch size (T={T}, {threads} threads; bars: 95 % interval)", fontsize=10)
    return save(fig, out, "grid_batch.png")


def plot_seq(grid, B, H, threads, out):
    df = grid[(grid["batch_size"] == B) & (grid["hidden_size"] == H) & (grid["threads"] == threads)]
    figs = figures(df, ["impl", "seq_length"], "chars_per_s")
    if not figs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, impl in enumerate(dict.fromkeys(i for i, _ in figs)):
        Ts = sorted(t for i, t in figs if i == impl)
        y = np.array([figs[impl, t] for t in Ts])
        ax.errorbar(Ts, y[:, 0], yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]], fmt="o-", color=f"C{n}", capsize=3, label=impl)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("characters per second")
    ax.set_title(f"Training throughput against sequence length (B={B}, H={H}, {threads} threads)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return save(fig, out, "grid_seq.png")


def plot_generation(gen, threads, out):
    df = gen[gen["threads"] == threads] if not gen.empty else gen
    figs = figures(df, ["batch_size", "impl"], "ms_per_char_median")
    batches = sorted({b for b, _ in figs})
    if not batches:
        return None
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 3.8), squeeze=False)
    for ax, B in zip(axes.flat, batches):
        impls = [i for b, i in figs if b == B]
        y = np.array([figs[B, i] for i in impls])
        ax.bar(impls, y[:, 0], yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]], capsize=4,
               color=[f"C{n}" for n in range(len(impls))])
        ax.set_yscale("log")
        ax.set_ylabel("ms per step (a character per stream)")
        ax.set_title(f"generation at batch {B}, {threads} threads", fontsize=10)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    return save(fig, out, "grid_generation.png")


def plot_startup(startup, threads, out):
    df = startup[startup["threads"] == threads] if not startup.empty else startup
    parts = [(c, figures(df, ["impl"], c)) for c in ("import_s", "build_s", "first_step_s")]
    impls = list(parts[0][1])
    if not impls:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(impls) + 1.5))
    left = np.zeros(len(impls))
    for n, (column, figs) in enumerate(parts):
        width = np.array([figs.get(i, (0,))[0] for i in impls])
        ax.barh(impls, width, left=left, color=f"C{n}", label=column[:-2].replace("_", " "))
        left += width
    ax.set_xlabel("seconds (medians)")
    ax.set_title(f"Start-up: import, model build, first step ({threads} threads)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, out, "grid_startup.png")


# ---------------------------------------------------------------------------------------------
# The tables and findings

def batch_table(grid, T, threads):
    """Rows (impl, H), a column per batch size, and where throughput stops growing."""
    df = grid[(grid["seq_length"] == T) & (grid["threads"] == threads)]
    figs = figures(df, ["impl", "hidden_size", "batch_size"], "chars_per_s")
    Bs = sorted({b for _, _, b in figs})
    rows = []
    for impl, H in dict.fromkeys((i, h) for i, h, _ in figs):
        row = {"impl": impl, "H": H, **{f"B{b}": with_interval(figs[impl, H, b]) for b in Bs if (impl, H, b) in figs}}
        stop = stops_growing([b for b in Bs if (impl, H, b) in figs], [figs[impl, H, b][0] for b in Bs if (impl, H, b) in figs])
        row["stops"] = f"B={stop}" if stop else f"still growing at B={max(Bs)}"
        rows.append(row)
    columns = [("impl", "implementation"), ("H", "H")] + [(f"B{b}", f"B={b}") for b in Bs] + [("stops", "stops growing")]
    return md_table(rows, columns), rows


def seq_table(grid, B, H, threads):
    df = grid[(grid["batch_size"] == B) & (grid["hidden_size"] == H) & (grid["threads"] == threads)]
    figs = figures(df, ["impl", "seq_length"], "chars_per_s")
    Ts = sorted({t for _, t in figs})
    rows = [{"impl": impl, "device": devices(df, impl), **{f"T{t}": with_interval(figs[impl, t]) for t in Ts if (impl, t) in figs}}
            for impl in dict.fromkeys(i for i, _ in figs)]
    return md_table(rows, [("impl", "implementation"), ("device", "device")] + [(f"T{t}", f"T={t}") for t in Ts])


def threads_table(grid, B, H, T, threads):
    df = grid[(grid["batch_size"] == B) & (grid["hidden_size"] == H) & (grid["seq_length"] == T)]
    figs = figures(df, ["impl", "threads"], "chars_per_s")
    rows = []
    for impl in dict.fromkeys(i for i, _ in figs):
        one, many = figs.get((impl, 1)), figs.get((impl, threads))
        mine = df[(df["impl"] == impl) & (df["status"] == "ok")]
        by_rep = mine.pivot_table(index="rep", columns="threads", values="chars_per_s", aggfunc="median")
        speedup = interval((by_rep[threads] / by_rep[1]).dropna()) if one and many and threads != 1 else (math.nan,) * 3
        rows.append({"impl": impl, "one": with_interval(one) if one else "–", "many": with_interval(many) if many else "–",
                     "speedup": with_interval(speedup, times), "fig": speedup})
    return md_table(rows, [("impl", "implementation"), ("one", "1 thread"), ("many", f"{threads} threads"),
                           ("speedup", f"{threads} threads / 1")]), rows


def generation_table(gen):
    figs = figures(gen, ["impl", "threads", "batch_size"], "ms_per_char_median")
    p90 = figures(gen, ["impl", "threads", "batch_size"], "ms_per_char_p90")
    batches = sorted({b for _, _, b in figs})
    rows = []
    for impl, threads in dict.fromkeys((i, t) for i, t, _ in figs):
        row = {"impl": impl, "threads": threads, "device": devices(gen, impl)}
        for b in batches:
            if (impl, threads, b) in figs:
                row[f"m{b}"], row[f"p{b}"] = with_interval(figs[impl, threads, b], ms), ms(p90[impl, threads, b][0])
                row[f"c{b}"] = k(b * 1e3 / figs[impl, threads, b][0])
        rows.append(row)
    columns = [("impl", "implementation"), ("threads", "threads"), ("device", "device")]
    for b in batches:
        columns += [(f"m{b}", f"B={b} median ms"), (f"p{b}", f"B={b} p90 ms"), (f"c{b}", f"B={b} chars/s")]
    return md_table(rows, columns)


def startup_table(startup):
    rows = []
    for threads in sorted(startup["threads"].unique()) if not startup.empty else ():
        df = startup[startup["threads"] == threads]
        parts = {c: figures(df, ["impl"], c) for c in ("import_s", "build_s", "first_step_s", "total_s")}
        for impl in parts["total_s"]:
            rows.append({"impl": impl, "threads": threads, "device": devices(df, impl),
                         **{c: with_interval(parts[c][impl], seconds) for c in parts}})
    return md_table(rows, [("impl", "implementation"), ("threads", "threads"), ("device", "device"),
                           ("import_s", "import s"), ("build_s", "model build s"), ("first_step_s", "first step s"),
                           ("total_s", "total s")])


def devices(df, impl):
    return ", ".join(sorted({str(d) for d in df.loc[df["impl"] == impl, "device"].dropna() if str(d)})) or "–"


def best_of(df, column, what, lower=False, unit=k):
    """A finding: the best implementation among df's rows (one workload) and its lead over the next."""
    figs = figures(df, ["impl"], column)
    order = ranked(figs, lower)
    if not order:
        return None
    best, second = order[0], order[1] if len(order) > 1 else None
    r = ratio(df, column, second, best) if lower and second else ratio(df, column, best, second) if second else None
    return compare(what, best, second, figs[best], r, unit, lower)


def findings(grid, gen, startup, ref, threads, batch_rows, thread_rows):
    B, H, T = ref
    out = []
    at = grid[(grid["seq_length"] == T) & (grid["threads"] == threads)] if not grid.empty else grid
    for b in sorted(at["batch_size"].unique()) if not at.empty else ():
        out.append(best_of(at[(at["batch_size"] == b) & (at["hidden_size"] == H)], "chars_per_s",
                           f"Training at B={b}, H={H}, T={T} (chars/s)"))
    if not at.empty:
        big = at[(at["batch_size"] == at["batch_size"].max()) & (at["hidden_size"] == at["hidden_size"].max())]
        out.append(best_of(big, "chars_per_s", f"Training at the largest shape, B={big['batch_size'].max()}, "
                                                     f"H={big['hidden_size'].max()}, T={T} (chars/s)"))
    stops = [f"{r['impl']} {r['stops']}" for r in batch_rows if r["H"] == H]
    if stops:
        out.append(f"Where throughput stops growing at H={H} (less than {GAIN:.0%} more per doubling of the batch): "
                   + "; ".join(stops) + ".")
    for b in sorted(gen["batch_size"].unique()) if not gen.empty else ():
        unit = "ms per character" if b == 1 else "ms per step of a character in each stream"
        out.append(best_of(gen[(gen["batch_size"] == b) & (gen["threads"] == threads)], "ms_per_char_median",
                           f"Generation at batch {b}, {threads} threads ({unit}, lower is better)",
                           lower=True, unit=ms))
    one = gen[(gen["batch_size"] == 1) & (gen["threads"] == 1)] if not gen.empty else gen
    if threads != 1 and not one.empty:
        out.append(best_of(one, "ms_per_char_median", "Generation at batch 1, 1 thread (ms per character)",
                           lower=True, unit=ms))
    if not startup.empty:
        out.append(best_of(startup[startup["threads"] == threads], "total_s",
                           "Start-up to the end of the first step (s, lower is better)", lower=True, unit=seconds))
    gains = [r for r in thread_rows if np.isfinite(r["fig"][0])]
    if gains:
        parts = [f"{r['impl']} {with_interval(r['fig'], times)}" for r in sorted(gains, key=lambda r: -r["fig"][0])]
        out.append(f"{threads} threads against 1 at the reference shape: " + "; ".join(parts) + ".")
    return [f for f in out if f]


def write_report(out):
    """Write out/GRID.md and its plots; returns a line saying where."""
    out = Path(out)
    grid, gen, startup = (read_csv(out / f"{name}.csv") for name in ("grid", "generation", "startup"))
    if grid.empty:
        return f"nothing to report: {out / 'grid.csv'} is missing or empty (run python -m benchmarks.grid first)"
    record = json.loads((out / "grid.json").read_text()) if (out / "grid.json").exists() else {}
    settings = record.get("settings", {})
    threads = int(settings.get("threads") or grid["threads"].max())
    ref = tuple(settings.get("reference") or grid.iloc[0][["batch_size", "hidden_size", "seq_length"]].astype(int))
    B, H, T = ref
    batch_md, batch_rows = batch_table(grid, T, threads)
    threads_md, thread_rows = threads_table(grid, B, H, T, threads)
    plots = [p for p in (plot_batch(grid, T, threads, out), plot_seq(grid, B, H, threads, out),
                         plot_generation(gen, threads, out), plot_startup(startup, threads, out)) if p]
    failed = grid[grid["status"] != "ok"]
    busiest = max((frame["others_busy_cores"].max() for frame in (grid, gen, startup)
                   if "others_busy_cores" in frame and frame["others_busy_cores"].notna().any()), default=math.nan)
    load = (f"Other processes kept at most {busiest:.2f} cores busy beside a worker"
            + (f": **a busy machine (above {BUSY_CORES}); do not quote these figures**." if busiest > BUSY_CORES else ".")
            if np.isfinite(busiest) else "The machine's load was not recorded.")
    config = record.get("config", {})
    lines = [
        "# The workloads users run: batch, hidden size, sequence length, threads, generation, start-up", "",
        f"Made by `python -m benchmarks.grid` ({'--quick: tiny shapes, not figures to quote; ' if settings.get('quick') else ''}"
        f"{record.get('date', 'date not recorded')}, {record.get('seconds', math.nan):.0f} s in all) on "
        f"{record.get('cpu', {}).get('model', 'an unrecorded CPU')}, {threads} threads ('all threads') and 1; "
        f"V={config.get('vocab_size', '?')}, L={config.get('num_layers', '?')}, {config.get('dtype', 'float32')}, "
        f"{config.get('optimizer', 'adam')}; the reference shape B={B}, H={H}, T={T}. Devices of the rows: "
        + "; ".join(f"{impl} {devices(grid, impl)}" for impl in dict.fromkeys(grid["impl"])) + ". " + load, "",
        f"**How each figure is made.** Every implementation ran in {settings.get('reps', '?')} fresh process(es) "
        f"per thread count (one per repetition, the repetitions interleaved in a random order), with the same "
        f"batches and initial weights. Each shape is budgeted by time: its first step (tracing, compiling) is left "
        f"out, then steps are timed until {settings.get('budget', '?')} s have passed once {settings.get('min_steps', '?')} "
        f"are timed (at most {settings.get('max_steps', '?')}); the process's median step is its figure. A table gives "
        f"the median over the processes and, in brackets, the {LEVEL:.0%} percentile-bootstrap interval of that "
        f"median (with 3 processes it spans most of them); a ratio's interval comes from the per-repetition ratios, "
        f"and a ratio whose interval holds 1 is no measurable difference. Not every combination is run: batch x "
        f"hidden size at T={T}, sequence length at B={B}, H={H}, and 1 thread against {threads} at the reference "
        f"shape, which keeps the grid within 30 minutes on 2 cores.", "",
        "## Findings", "", *[f"- {f}" for f in findings(grid, gen, startup, ref, threads, batch_rows, thread_rows)], "",
        f"## Training throughput over batch size and hidden size (chars/s; T={T}, {threads} threads)", "",
        f"'Stops growing' is the batch size from which doubling the batch gains less than {GAIN:.0%} throughput "
        f"(between neighbours of the ladder, per doubling: 1 to 8 counts three doublings), from the medians.", "",
        batch_md, "",
        f"## Training throughput over sequence length (chars/s; B={B}, H={H}, {threads} threads)", "",
        seq_table(grid, B, H, threads), "",
        f"## Threads (chars/s at B={B}, H={H}, T={T})", "", threads_md, "",
        "## Generation latency per character", "",
        "The sampling loop's own path: `common/sampling.py` at batch 1 (the prime once, then each character fed "
        "alone with the carried state: one forward of shape (1, 1) and one draw per character), the same loop over "
        f"B streams at larger batches (one forward of (B, 1), B characters). Untrained weights at H={H}; the first "
        f"{settings.get('gen_warmup', '?')} characters left out. ms per step: each stream waits this long for its next "
        "character; chars/s counts all streams.", "",
        generation_table(gen) if not gen.empty else "(no generation measured)", "",
        "## Start-up: import, model build, first step (s)", "",
        "Import is the framework and the implementation's module; build is the model from the initial weights; the "
        "first step is the first train_step at the reference shape (tracing and compiling where the framework does).",
        "", startup_table(startup) if not startup.empty else "(no start-up measured)", "",
        "## Plots", "", *[f"![{p}]({p})" for p in plots], "",
    ]
    if not failed.empty:
        lines += ["## Shapes that failed", "", md_table(failed.to_dict("records"), [
            ("rep", "rep"), ("impl", "implementation"), ("threads", "threads"), ("batch_size", "B"),
            ("hidden_size", "H"), ("seq_length", "T"), ("status", "status")]), ""]
    tmp = out / "GRID.md.part"
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(out / "GRID.md")
    return f"report: {out / 'GRID.md'}"
