"""What made it fast: each speed lever measured before and after, and every implementation at 1 and
2 threads, each run in its own worker process (benchmarks/worker.py) in one run.

    python -m benchmarks.levers --out results --repeats 3  # reference config, ~7 min on 2 idle cores
    python -m benchmarks.levers --out /tmp/lv --hidden-size 16 --iters 3 --frameworks numpy
    python -m benchmarks.report results                     # "What made it fast" and the threads table

A lever's "before" is the simpler code a first version would have had, made in the worker process
by one of the variant functions below (the worker calls spec["variant"] after the framework set-up
and before the model is built): it patches the implementation's module or returns keyword arguments
for CharLSTM. model.py and fast.py files are never edited. A change of a whole file's layout is not
a lever but a path of its own: the lesson against the tuned code is numpy-cell against numpy-fast
in the main benchmark's table. The shipped code is the baseline (no variant). Both sides must
compute the same numbers: the losses of the first step and of the warm-up steps (before any
timing) must agree to 1e-4, or the row says so and the run exits with status 1.
Written to --out:

    levers.csv    lever, impl, before_chars_per_s, after_chars_per_s, ratio (after / before),
                  kept (is the "after" in the shipped code: yes/no; "bench": a setting of the
                  benchmark itself, such as the allocator), note
    threads.csv   impl, threads, chars_per_s, step_ms_median, time_to_first_step_s, status
"""

import argparse
import inspect
import re
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.run import DEFAULTS, Parser, names, positive_float, run_worker, whole, write_csv
from benchmarks.worker import MALLOC_CHOICES
from common.errors import ConfigError, RosettaError

LEVERS_COLUMNS = ["lever", "impl", "before_chars_per_s", "after_chars_per_s", "ratio", "kept", "note"]
THREADS_COLUMNS = ["impl", "threads", "chars_per_s", "step_ms_median", "time_to_first_step_s", "status"]
IMPLS = [("numpy-cell", "numpy", "cell"), ("numpy-fast", "numpy", "fast"), ("torch-layer", "torch", "layer"),
         ("torch-cell", "torch", "cell"),
         ("keras-layer", "keras", "layer"), ("keras-cell", "keras", "cell"), ("keras-fast", "keras", "fast")]
LOSS_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------
# Variants: called in the worker process as variant(framework, path, info); `info` is stored in the
# worker's result (variant_info); the return value is CharLSTM's extra keyword arguments, or None.

def patch_source(module, qualname, replacements):
    """Recompile module.<qualname> (a function or Class.method) from its own source with each regex
    (pattern, replacement) applied: the shipped code with exactly these lines changed. A pattern
    that no longer matches is an error saying so, rather than a silent measurement of nothing."""
    *outer, name = qualname.split(".")
    owner = module
    for part in outer:
        owner = getattr(owner, part)
    source = textwrap.dedent(inspect.getsource(getattr(owner, name)))
    for pattern, replacement in replacements:
        source, n = re.subn(pattern, replacement, source, flags=re.M)
        if not n:
            raise ConfigError(f"{module.__name__}.{qualname} no longer contains {pattern!r}; "
                              f"update the variant in benchmarks/levers.py.")
    defined = {}
    exec(compile(source, f"<benchmarks.levers: {module.__name__}.{qualname}>", "exec"), module.__dict__, defined)
    setattr(owner, name, defined[name])


def scatter_add_rows(ids, dz, V):
    """dW_x of layer 0 the first way: dz's row n added into row ids[n] of a (V, 4H) zero array."""
    import numpy as np
    dW_x = np.zeros((V, dz.shape[1]), dtype=dz.dtype)
    np.add.at(dW_x, ids, dz)
    return dW_x


def numpy_scatter_dW_x(framework, path, info):
    """Before: layer 0's dW_x as np.add.at over the character ids (after: one-hot (V, N) @ dz)."""
    import numpy_impl.fast as m
    source = inspect.getsource(m.CharLSTM.backward)
    ids = re.search(r"one_hot = np\.eye\([^)]*\)\[(.+)\]", source)
    if not ids:
        raise ConfigError("numpy_impl.fast.CharLSTM.backward has no one-hot line; update benchmarks/levers.py.")
    m.levers_scatter_add_rows = scatter_add_rows
    patch_source(m, "CharLSTM.backward", [(r"^[ \t]*one_hot = .*\n", ""),
                                          (r"one_hot\.T @ dz_all\.T", f"levers_scatter_add_rows({ids.group(1)}, dz_all.T, V)")])


def numpy_dot_out(framework, path, info):
    """Before: np.dot(a, b, out=) in the recurrent loops (after: np.matmul(a, b, out=))."""
    import numpy_impl.fast as m
    for name in ("lstm_forward", "lstm_backward"):
        patch_source(m, name, [(r"np\.matmul\(", "np.dot(")])


def sigmoid(z):
    import numpy as np
    return 1 / (1 + np.exp(-z))


def plain_activate_gates(z, scale, shift):
    """The first version: sigmoid on i, f, o and tanh on g, slice by slice (the constants unused)."""
    import numpy as np
    H = z.shape[-2] // 4  # gates stacked as rows (4H, B)
    z[..., :2 * H, :] = sigmoid(z[..., :2 * H, :])
    z[..., 2 * H:3 * H, :] = np.tanh(z[..., 2 * H:3 * H, :])
    z[..., 3 * H:, :] = sigmoid(z[..., 3 * H:, :])


def plain_gate_derivatives(gates, P, Q, out=None):
    """a * (1 - a) for the sigmoids, 1 - a^2 for the tanh, as two separate expressions."""
    import numpy as np
    H = gates.shape[-2] // 4
    d = np.multiply(gates, 1 - gates, out=out)
    d[..., 2 * H:3 * H, :] = 1 - gates[..., 2 * H:3 * H, :] ** 2
    return d


def numpy_plain_gates(framework, path, info):
    """Before: plain sigmoid and tanh per gate slice (after: one np.tanh over all four gates)."""
    import numpy_impl.fast as m
    for name, args in (("activate_gates", ["scale", "shift"]), ("gate_derivatives", ["P", "Q"])):
        if list(inspect.signature(getattr(m, name, None) or (lambda: 0)).parameters)[1:3] != args:
            raise ConfigError(f"numpy_impl.fast.{name}(x, {', '.join(args)}) is gone; update benchmarks/levers.py.")
    m.activate_gates, m.gate_derivatives = plain_activate_gates, plain_gate_derivatives


def numpy_new_arrays(framework, path, info):
    """Before: every array new each step (after: the model's Buffers keep the big ones)."""
    import numpy as np
    import numpy_impl.fast as m
    if not hasattr(m, "Buffers"):
        raise ConfigError("numpy_impl.fast.Buffers is gone; update benchmarks/levers.py.")
    m.Buffers.__call__ = lambda self, name, shape, dtype: np.empty(shape, dtype)


def onednn_lstm_ops():
    """The oneDNN LSTM operators a tiny nn.LSTM forward and backward dispatches to right now."""
    import torch
    from torch.profiler import profile
    lstm = torch.nn.LSTM(8, 8, num_layers=2, batch_first=True)
    with profile() as prof:
        lstm(torch.randn(2, 3, 8))[0].sum().backward()
    return sorted({e.name for e in prof.events() if "mkldnn" in e.name.lower()})


def torch_onednn_off(framework, path, info):
    """Before: torch.backends.mkldnn off, so nn.LSTM takes ATen's native kernels (after: the default)."""
    import torch
    info["onednn_ops_default"] = onednn_lstm_ops()  # what the shipped run dispatches to
    torch.backends.mkldnn.enabled = False
    info["onednn_ops_off"] = onednn_lstm_ops()


def torch_compile_step(framework, path, info):
    """After: torch.compile of the cell's one step, LSTMCell.forward (never of the loop over T)."""
    import torch
    import torch_impl.model as m
    step = getattr(getattr(m, "LSTMCell", None), "forward", None)
    if step is None:
        raise ConfigError("torch_impl.model.LSTMCell.forward is gone; update benchmarks/levers.py.")
    info["shipped"] = hasattr(step, "_torchdynamo_orig_callable")  # already compiled in model.py
    m.LSTMCell.forward = torch.compile(step)


def keras_w_h_in_loop(framework, path, info):
    """Before: the cell path reads the variable W_h inside the loop body (after: once, before the loop)."""
    import keras_impl.fast as m
    patch_source(m, "LSTMLayer.call", [(r"ops\.matmul\(h, W_h\)", "ops.matmul(h, self.W_h)")])


def keras_tensorarray_write(framework, path, info):
    """Before: the cell path's h written to a tf.TensorArray (after: write_row into a zeros tensor)."""
    import keras_impl.fast as m
    patch_source(m, "LSTMLayer.call", [(r"hs = tf\.zeros\(.*", "hs = tf.TensorArray(h.dtype, size=T, element_shape=h.shape)"),
                                       (r"write_row\(hs, t, h\)", "hs.write(t, h)"),
                                       (r"ops\.swapaxes\(hs, 0, 1\)", "ops.swapaxes(hs.stack(), 0, 1)")])


def keras_xla_off(framework, path, info):
    """Before: the train step in a tf.function without XLA."""
    import keras_impl.fast as m
    info["shipped"] = not getattr(m, "JIT_COMPILE", {}).get(path, False)
    return {"jit_compile": False}


def keras_xla_on(framework, path, info):
    """After: the train step in a tf.function(jit_compile=True), XLA asked for explicitly."""
    import keras_impl.fast as m
    info["shipped"] = bool(getattr(m, "JIT_COMPILE", {}).get(path, False))
    return {"jit_compile": True}


def run_tag(impl, name, malloc, threads):
    """A run's name in the progress lines and the worker's files: "numpy-fast+numpy_new_arrays
    default-malloc 2t". No "@": benchmarks.run.backend_of reads what follows one as Keras' backend."""
    return f"{impl}{'+' + name if name else ''}{' ' + malloc + '-malloc' if malloc else ''} {threads}t"


# ---------------------------------------------------------------------------------------------
# The levers: (name, impl, before variant, after variant, kept). A side is a variant function's
# name or None for the shipped code, and "@default" or "@steady" after it runs that side's worker
# with that allocator (run.py --malloc) instead of --malloc. kept is "yes"/"no", "bench" for what
# the benchmark itself does, or "info" to take it from the after run's variant_info["shipped"].
LEVERS = [
    *(("steady allocator: freed memory kept for the next step (before: the machine's malloc)", impl,
       "@default", "@steady", "bench") for impl, _, _ in IMPLS),
    ("arrays kept between steps in Buffers (before: new arrays each step), with the machine's malloc",
     "numpy-fast", "numpy_new_arrays@default", "@default", "yes"),
    ("one-hot product for layer 0's dW_x (before: np.add.at scatter)", "numpy-fast", "numpy_scatter_dW_x", None, "yes"),
    ("np.matmul(out=) in the recurrent loops (before: np.dot(out=))", "numpy-fast", "numpy_dot_out", None, "yes"),
    ("all four gates from one np.tanh (before: sigmoid and tanh per slice)", "numpy-fast", "numpy_plain_gates", None, "yes"),
    ("nn.LSTM on oneDNN (before: torch.backends.mkldnn off)", "torch-layer", "torch_onednn_off", None, "yes"),
    ("torch.compile of LSTMCell.forward, the cell's one step", "torch-cell", None, "torch_compile_step", "info"),
    ("W_h read once before the loop (before: the variable read inside it, which the loop's gradient "
     "keeps a copy of at every step)", "keras-fast", "keras_w_h_in_loop", None, "yes"),
    ("h written with write_row (before: tf.TensorArray.write, whose gradient costs two copies of "
     "the (T, B, H) buffer a step under XLA)", "keras-fast", "keras_tensorarray_write", None, "yes"),
    ("XLA (jit_compile=True) on the layer path's train step", "keras-layer", "keras_xla_off", "keras_xla_on", "info"),
    ("XLA (jit_compile=True) on the tuned cell's train step", "keras-fast", "keras_xla_off", "keras_xla_on", "info"),
]


# ---------------------------------------------------------------------------------------------
# Running and reading the workers

def chars_per_s(result, config):
    """B x T / median timed step, or None when the run failed or timed nothing."""
    times = [s["step_time_s"] for s in result.get("steps", []) if s["phase"] == "timed"]
    if result.get("status") != "ok" or not times:
        return None
    return config.batch_size * config.seq_length / statistics.median(times)


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def early_losses(result):
    """The losses of the first step and the warm-up steps: the same numbers on both sides of a lever."""
    return [s["loss"] for s in result.get("steps", []) if s["phase"] in ("first", "warmup")]


def loss_gap(a, b):
    la, lb = early_losses(a), early_losses(b)
    n = min(len(la), len(lb))
    return max(abs(x - y) for x, y in zip(la[:n], lb[:n])) if n else None


def lever_row(lever, impl, before, after, kept, runs, config):
    """One row of levers.csv from the runs of both sides (lists over the repeats)."""
    b, a = runs[(impl, before)], runs[(impl, after)]
    b_speed = median_or_none([chars_per_s(r, config) for r in b])
    a_speed = median_or_none([chars_per_s(r, config) for r in a])
    notes, mismatch = [f"median of {len(b)} and {len(a)} runs" if len(b) > 1 or len(a) > 1 else "one run each"], False
    for side, rs in (("before", b), ("after", a)):
        failed = [r["status"] for r in rs if r.get("status") != "ok"]
        if failed:  # its first line: the exception and its message, not TensorFlow's stack
            notes.append(f"{side} {failed[0].strip().splitlines()[0][:240]}")
    if kept == "info":
        kept = "yes" if a[0].get("variant_info", {}).get("shipped") else "no"
    first_b, first_a = (min((r.get("time_to_first_step_s") or 0) for r in rs) for rs in (b, a))
    if first_b and first_a:
        notes.append(f"first step {first_b:.1f} s before, {first_a:.1f} s after")
        if "compile" in lever or "XLA" in lever:
            notes[-1] += f" (compiling: {first_a - first_b:+.1f} s)"
    faults = [median_or_none([r.get("page_faults_per_step") for r in rs]) for rs in (b, a)]
    if None not in faults:
        notes.append(f"page faults per step {faults[0]:,.0f} before, {faults[1]:,.0f} after")
    gap = loss_gap(b[0], a[0])
    if gap is not None:
        mismatch = gap > LOSS_TOLERANCE
        notes.append(f"early losses {'DIFFER' if mismatch else 'agree'}: max gap {gap:.1e}")
    info = {k: v for r in b + a for k, v in r.get("variant_info", {}).items() if k.startswith("onednn")}
    if info:
        seen = lambda ops: "yes (" + ", ".join(ops) + ")" if ops else "no"  # noqa: E731
        notes.append(f"oneDNN LSTM kernels with the default flags: {seen(info.get('onednn_ops_default'))}; "
                     f"with mkldnn off: {seen(info.get('onednn_ops_off'))}")
    ratio = a_speed / b_speed if a_speed and b_speed else None
    return {"lever": lever, "impl": impl, "before_chars_per_s": b_speed, "after_chars_per_s": a_speed,
            "ratio": ratio, "kept": kept, "note": "; ".join(notes)}, mismatch


def build_parser():
    p = Parser(prog="python -m benchmarks.levers", description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--out", default="results", help="folder for levers.csv and threads.csv (default %(default)s)")
    p.add_argument("--iters", type=whole(1), default=30, help="timed steps per run (default %(default)s)")
    p.add_argument("--warmup", type=whole(0), default=3, help="steps after the first one, left out of the timing (default %(default)s)")
    p.add_argument("--threads", type=whole(1), default=2,
                   help="threads of the lever runs; the threads table also runs every implementation at 1 (default %(default)s)")
    p.add_argument("--repeats", type=whole(1), default=1,
                   help="runs of each side, interleaved before/after, median taken (default %(default)s)")
    p.add_argument("--frameworks", type=names, default="numpy,torch,keras",
                   help="only the levers and implementations of these frameworks (default %(default)s)")
    p.add_argument("--hidden-size", type=whole(1), default=256, help="LSTM units per layer (default %(default)s)")
    p.add_argument("--num-layers", type=whole(1), default=2, help="stacked LSTM layers (default %(default)s)")
    p.add_argument("--batch-size", type=whole(1), default=32, help="text streams per batch (default %(default)s)")
    p.add_argument("--seq-length", type=whole(1), default=64, help="time steps per batch (default %(default)s)")
    p.add_argument("--learning-rate", type=positive_float, default=DEFAULTS["learning_rate"][0],
                   help="Adam's step size, as in benchmarks.run (default %(default)s)")
    p.add_argument("--corpus", default="tinyshakespeare", help="built-in corpus name or a UTF-8 text file (default %(default)s)")
    p.add_argument("--malloc", choices=MALLOC_CHOICES, default="steady",
                   help="the workers' allocator, as in benchmarks.run (default %(default)s)")
    p.add_argument("--budget", type=positive_float, default=30.0,
                   help="seconds of timed steps after which a run stops (at least 3 steps): keeps slow 'befores' short (default %(default)s)")
    p.add_argument("--timeout", type=positive_float, default=600.0,
                   help="seconds after which one run's process is stopped and recorded as failed (default %(default)s)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        from common.config import Config
        from common.corpus import load_corpus
        from common.frameworks import check_framework
        for framework in args.frameworks:
            check_framework(framework)
        corpus = load_corpus(args.corpus)
        config = Config(vocab_size=len(corpus.vocab), hidden_size=args.hidden_size, num_layers=args.num_layers,
                        batch_size=args.batch_size, seq_length=args.seq_length,
                        learning_rate=args.learning_rate, optimizer="adam", dtype="float32")
    except RosettaError as e:
        print(f"python -m benchmarks.levers: error: {e}", file=sys.stderr)
        return 2
    impls = [i for i in IMPLS if i[1] in args.frameworks]
    levers = [lv for lv in LEVERS if lv[1] in {i for i, _, _ in impls}]
    frameworks = {impl: (fw, path) for impl, fw, path in impls}
    thread_counts = sorted({1, args.threads})
    order = []  # (impl, variant, threads): each lever's two sides next to each other, then the threads
    for _, impl, before, after, _ in levers:
        order += [(impl, before, args.threads), (impl, after, args.threads)]
    order += [(impl, None, n) for n in thread_counts for impl, _, _ in impls]
    order = list(dict.fromkeys(order))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say(f"levers: {len(levers)} levers, {len(order)} runs x {args.repeats} | V={config.vocab_size} "
        f"H={config.hidden_size} L={config.num_layers} B={config.batch_size} T={config.seq_length} "
        f"float32 adam | {args.iters} timed steps after {args.warmup} warm-up | -> {out}")
    started = time.perf_counter()
    runs = {}
    base = {"mode": "train", "corpus": args.corpus, "config": config.to_dict(), "iters": args.iters,
            "warmup": args.warmup, "val_every": 0, "sample_length": 0, "budget_s": args.budget}
    try:
        with tempfile.TemporaryDirectory(prefix="rosetta-levers-") as work:
            for repeat in range(args.repeats):
                for n, (impl, variant, threads) in enumerate(order, 1):
                    framework, path = frameworks[impl]
                    name, _, malloc = (variant or "").partition("@")
                    tag = run_tag(impl, name, malloc, threads)
                    say(f"[{n + repeat * len(order)}/{len(order) * args.repeats}] {tag}")
                    spec = {**base, "impl": tag, "framework": framework, "path": path,
                            "variant": f"benchmarks.levers:{name}" if name else None}
                    r = run_worker(spec, Path(work), threads, args.timeout, malloc or args.malloc)
                    speed = chars_per_s(r, config)
                    say(f"  {tag}: {r.get('status')}" + (f", {speed:,.0f} chars/s" if speed else ""))
                    runs.setdefault((impl, variant, threads), []).append(r)
    except KeyboardInterrupt:
        say("interrupted; nothing written")
        return 130

    rows, mismatches = [], []
    at = {(impl, variant): rs for (impl, variant, threads), rs in runs.items() if threads == args.threads}
    for lever, impl, before, after, kept in levers:
        row, mismatch = lever_row(lever, impl, before, after, kept, at, config)
        rows.append(row)
        if mismatch:
            mismatches.append(lever)
    write_csv(out / "levers.csv", LEVERS_COLUMNS, rows)
    threads_rows = []
    for n in thread_counts:
        for impl, _, _ in impls:
            rs = runs[(impl, None, n)]
            speed = median_or_none([chars_per_s(r, config) for r in rs])
            threads_rows.append({"impl": impl, "threads": n, "chars_per_s": speed,
                                 "step_ms_median": 1e3 * config.batch_size * config.seq_length / speed if speed else None,
                                 "time_to_first_step_s": min((r.get("time_to_first_step_s") or 0) for r in rs) or None,
                                 "status": rs[0].get("status")})
    write_csv(out / "threads.csv", THREADS_COLUMNS, threads_rows)
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "-"
        say(f"{row['impl']:12} {ratio:>7}  kept {row['kept']:3}  {row['lever']}")
    say(f"done in {time.perf_counter() - started:.0f} s: {out / 'levers.csv'}, {out / 'threads.csv'} "
        f"(next: python -m benchmarks.report {out})")
    if mismatches:
        say(f"error: before and after computed different losses (> {LOSS_TOLERANCE:g}) for: {'; '.join(mismatches)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
