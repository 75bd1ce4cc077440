"""One benchmark run of one implementation, in its own process: the uniform runner of the harness.

    python -m benchmarks.worker --spec '{"mode": "train", "framework": "torch", "path": "layer", ...}'

benchmarks/run.py starts one worker per implementation (and per matrix-multiply library), with the
thread count and the allocator's settings (STEADY_MALLOC below) in the environment, and reads back the JSON file the worker writes to spec["out"].
Progress goes to stderr, one line at a time, for run.py to relay. Modes:

    train   time to first step (framework import + model build + first train_step), warm-up
            steps left out, then `iters` timed steps; validation loss every `val_every` steps;
            resident memory just before the first step (idle: libraries, data, model), between
            steps after the warm-up (warm) and the peak before that, the peak of the timed steps
            alone, and the peak of the whole run; page faults and kernel time per timed step
            (what the allocator costs); a generated sample at the end; then, if
            spec["sweep"] asks, throughput only at other hidden sizes (a fresh model each, a few
            timed steps)
    gemm    float32 (n, n) @ (n, n) with numpy or torch: the machine's matrix-multiply peak
    grid    benchmarks/grid.py's workloads: start-up split into import, model build and first
            step; then training throughput at each shape of spec["cells"] (a fresh model each,
            the first step left out); then generation latency per character with the carried
            state (common/sampling.py's own loop at batch 1, the same loop over B streams)

A train spec may name a `variant`, "module:function" (benchmarks/levers.py): called after the
framework set-up and before the model is built, it may patch the implementation's module (the
"before" of a speed lever) and returns extra keyword arguments for CharLSTM; what it reports goes
to result["variant_info"]. `budget_s` stops the timed steps after that many seconds (at least 3); the last
step run is validated all the same. `final_val` validates at the last step even with `val_every`
0, and `weights_out` names the .safetensors file the final weights are saved to (run.py re-scores
them with numpy's forward: benchmarks/checks.py).

The model is reached only through the docs/DESIGN.md interface (common.frameworks.make_model); the
framework itself is imported here by name only to set its threads and to say which device it
used, in one small function per framework below.
"""

import argparse
import hashlib
import json
import math
import os
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

from common import runtime
from common.frameworks import THREAD_VARIABLES


# glibc's malloc serves a block above its mmap threshold straight from the kernel and returns it
# when freed (munmap, and trimming the heap's top); the threshold itself moves with what the process
# frees. A training step that frees and allocates tens of MB then pays the kernel for fresh zeroed
# pages, every step: torch-layer measured 17,650 page faults and 30 ms of system time in a 53 ms
# step, or no faults and 30 ms a step, depending on how the threshold had moved in that process.
# Fixed at its largest value (32 MiB) and with no trimming, every framework's freed memory serves
# its next step. run.py and levers.py set this for every worker alike (--malloc steady), and
# `rosetta train` and `sample` set the same values at start-up (common/runtime.py, one source).
STEADY_MALLOC = {name: str(value) for name, value in runtime.STEADY_MALLOC.items()}
MALLOC_CHOICES = runtime.MALLOC_CHOICES
SAMPLE_TEMPERATURE = 0.8  # the generated text after a main run


def malloc_env(malloc):
    """Environment variables for the workers' allocator: STEADY_MALLOC, or none for "default"
    (the machine's own, which keeps any MALLOC_* the user set)."""
    return dict(STEADY_MALLOC) if malloc == "steady" else {}


def thread_env(threads, keras_backend=None):
    """Environment variables that fix every thread pool to `threads` (read at library import), and
    Keras' backend (tensorflow unless named)."""
    env = {name: str(threads) for name in THREAD_VARIABLES}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=keras_backend or "tensorflow")  # quiet TF
    if (keras_backend or "tensorflow") == "jax":  # XLA's CPU client: its thread pools to `threads`
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                            f"{'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}").strip()
    return env


# ---------------------------------------------------------------------------------------------
# Framework set-up: threads and device, one small function per framework

def setup_numpy(threads):
    import numpy as np
    return {"version": f"numpy {np.__version__}", "device": "cpu"}


def setup_torch(threads):
    import torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only allowed before the first parallel work; the env var covers it
        pass
    return {"version": f"torch {torch.__version__}", "device": "cpu",
            "threads": torch.get_num_threads()}


def setup_keras(threads):
    """Keras on the backend KERAS_BACKEND names (run.py sets it per row): that backend's threads."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        version, gpu = f"tensorflow {tf.__version__}", bool(tf.config.list_physical_devices("GPU"))
    elif backend == "jax":  # threads: XLA_FLAGS from thread_env, read when jax starts
        import jax
        version, gpu = f"jax {jax.__version__}", jax.default_backend() != "cpu"
    else:
        import torch
        torch.set_num_threads(threads)
        version, gpu = f"torch {torch.__version__}", torch.cuda.is_available()
    import keras
    return {"version": f"keras {keras.__version__} on {version}", "device": "gpu" if gpu else "cpu",
            "threads": threads}


SETUP = {"numpy": setup_numpy, "torch": setup_torch, "keras": setup_keras}


def setup(framework, threads):
    """Import `framework` and fix its threads; a missing package is a RosettaError saying what to install."""
    from common.errors import ConfigError
    from common.frameworks import PACKAGES
    try:
        return SETUP[framework](threads)
    except ImportError as e:
        raise ConfigError(f"{framework} cannot be imported ({e}); install {PACKAGES[framework]} "
                          f"with `make .venv` or pip install -r requirements.txt.") from None


def torch_device(model):
    """Where the torch model ran: the device of torch_impl/plumbing.py's Interface ("cpu", "cuda:0")."""
    return str(model.device)


def device_used(framework, model, info):
    if framework == "torch":
        return torch_device(model)
    return info["device"]


# ---------------------------------------------------------------------------------------------
# Helpers

def progress(tag, message):
    print(f"[{tag}] {message}", file=sys.stderr, flush=True)


def clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def peak_rss_mb():
    """Peak resident memory of this process in MB (Linux reports ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb():
    """Resident memory of this process now, in MB: /proc/self/statm's resident pages (Linux);
    where there is no /proc, the peak so far, the closest figure the standard library gives."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def restart_peak_rss():
    """Start a new peak: Linux resets VmHWM on writing 5 to /proc/self/clear_refs. False where it
    cannot (then the timed steps' peak is not recorded)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_since_restart_mb():
    """VmHWM, the peak resident memory since restart_peak_rss(), in MB; None without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def sha256_arrays(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()


def cross_entropy(logits, y):
    """Mean cross-entropy of logits (B, T, V) against targets y (B, T), computed in float64."""
    import numpy as np
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (B, T, V)
    return float(-np.take_along_axis(log_p, np.asarray(y)[..., None], axis=-1).mean())


def validation_loss(model, batches, num_batches):
    """Mean loss over the first `num_batches` validation batches, state carried from zeros."""
    state, total = None, 0.0
    for k in range(num_batches):
        x, y = batches[k]
        logits, state = model.forward(x, state)
        total += cross_entropy(logits, y)
    return total / num_batches


def apply_variant(spec, framework, path, result):
    """Call spec["variant"] ("module:function") if any: {} or CharLSTM's extra keyword arguments."""
    if not spec.get("variant"):
        return {}
    import importlib
    module, name = spec["variant"].split(":")
    result["variant"], result["variant_info"] = spec["variant"], {}
    return getattr(importlib.import_module(module), name)(framework, path, result["variant_info"]) or {}


def load_data(spec):
    """The corpus, config and train/validation batches: the same integer arrays in every worker."""
    from common.batches import Batches, split
    from common.config import Config
    from common.corpus import load_corpus

    corpus = load_corpus(spec["corpus"])
    config = Config.from_dict({**spec["config"], "vocab_size": len(corpus.vocab)})
    train, val = split(corpus.data)
    train_batches = Batches(train, config.batch_size, config.seq_length, "train")
    val_batches = Batches(val, config.batch_size, config.seq_length, "validation") \
        if spec.get("val_every") or spec.get("final_val") else None
    return corpus, config, train_batches, val_batches


# ---------------------------------------------------------------------------------------------
# The three modes

def run_train(spec, result):
    from common.batches import training_steps
    from common.frameworks import make_model, model_class
    from common.weights import init_weights

    tag, framework, path = spec["impl"], spec["framework"], spec["path"]
    corpus, config, train_batches, val_batches = load_data(spec)
    weights = init_weights(config)
    result["data_sha256"] = sha256_arrays(train_batches.x, train_batches.y)
    result["weights_sha256"] = sha256_arrays(*weights.values())
    iters, warmup, val_every = spec["iters"], spec["warmup"], spec["val_every"]
    num_val = min(spec.get("val_batches", 8), len(val_batches)) if val_batches else 0
    total = 1 + warmup + iters
    chars = config.batch_size * config.seq_length

    t0 = time.perf_counter()  # time to first step: import, build, first train_step (tracing)
    info = setup(framework, spec["threads"])
    kwargs = apply_variant(spec, framework, path, result)
    model = model_class(framework, path)(config, weights, path=path, **kwargs) if kwargs else \
        make_model(framework, config, weights, path=path, **model_options(spec, framework))
    result["framework_version"] = info["version"]
    result["device"] = device_used(framework, model, info)
    result["idle_rss_mb"] = current_rss_mb()  # what the step's own memory is measured from
    steps, vals = result["steps"], result["val"]
    last_print, budget, timed_since = time.perf_counter(), spec.get("budget_s"), None
    peak_restarted, faults, system_s = False, 0, 0.0
    for step, x, y, new_epoch in training_steps(train_batches, total):
        if new_epoch:
            model.reset_state()
        if step == warmup + 1:  # between steps, compiled and warm: what stays resident, then its peak
            warm = result["warm_rss_mb"] = current_rss_mb()
            # the kernel updates its peak lazily and can lag the current figure by a few pages:
            # a peak is never below a reading already taken
            result["warm_peak_rss_mb"] = max(peak_rss_mb(), warm, result["idle_rss_mb"])
            peak_restarted = restart_peak_rss()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        loss = model.train_step(x, y)  # a python float: the device has finished the step
        end = time.perf_counter()
        if step > warmup:  # page faults and kernel time of the timed steps: the allocator's cost
            after = resource.getrusage(resource.RUSAGE_SELF)
            faults += after.ru_minflt - usage.ru_minflt
            system_s += after.ru_stime - usage.ru_stime
        if step == 0:
            result["time_to_first_step_s"] = end - t0
        phase = "first" if step == 0 else "warmup" if step <= warmup else "timed"
        steps.append({"step": step, "phase": phase, "loss": float(loss), "step_time_s": end - start})
        if not math.isfinite(loss):
            result["status"] = f"failed: non-finite loss ({loss}) at step {step}"
            return
        val_loss = None
        if num_val and (val_every and (step + 1) % val_every == 0 or step == total - 1):
            val_loss = validation_loss(model, val_batches, num_val)  # outside the step clock
            vals.append({"step": step, "val_loss": val_loss})
        if step in (0, total - 1) or val_loss is not None or time.perf_counter() - last_print > 5:
            recent = [s["step_time_s"] for s in steps[1:][-20:]] or [end - start]
            mean = sum(recent) / len(recent)
            extra = f" val {val_loss:.4f}" if val_loss is not None else ""
            progress(tag, f"step {step + 1}/{total} loss {loss:.4f}{extra} | "
                          f"{chars / mean:,.0f} chars/s | {clock(mean * (total - 1 - step))} left")
            last_print = time.perf_counter()
        if phase == "timed":
            timed_since = timed_since or start
            if budget and step - warmup >= 3 and end - timed_since > budget:
                progress(tag, f"stopped after {step - warmup} timed steps: budget_s {budget:g} s reached")
                break
    if num_val and (not vals or vals[-1]["step"] != steps[-1]["step"]):  # a cap never skips the last one
        vals.append({"step": steps[-1]["step"], "val_loss": validation_loss(model, val_batches, num_val)})
    timed = sum(s["phase"] == "timed" for s in steps)
    if timed:
        result["page_faults_per_step"], result["system_ms_per_step"] = faults / timed, 1e3 * system_s / timed
    if peak_restarted:
        result["timed_peak_rss_mb"] = max(peak_rss_since_restart_mb() or 0, result["warm_rss_mb"])
    result["peak_rss_mb"] = max(peak_rss_mb(), result.get("warm_peak_rss_mb", 0),  # the restart lowers
                                result.get("timed_peak_rss_mb") or 0)              # ru_maxrss too
    if spec.get("weights_out"):  # the final weights, for run.py's re-scoring with numpy's forward
        from common.checkpoint import save_checkpoint
        save_checkpoint(spec["weights_out"], model.get_weights(), corpus.vocab, config, framework)
    if spec.get("sample_length"):
        from common.sampling import default_prime
        result.update(sample_length=spec["sample_length"], sample_prime=default_prime(corpus.vocab),
                      sample_temperature=SAMPLE_TEMPERATURE)  # what run.py's self-check re-draws against
        try:
            from common.sampling import sample
            result["sample"] = sample(model, corpus.vocab, spec["sample_length"], temperature=SAMPLE_TEMPERATURE,
                                      prime=result["sample_prime"], seed=config.seed)
        except Exception as e:  # a sampling problem must not cost the measured figures
            result["sample"] = f"(no sample: {type(e).__name__}: {e})"
    result["status"] = "ok"
    if spec.get("sweep"):
        result["main_done"] = True
        write_result(spec["out"], result)  # the main figures are safe whatever the sweep does
        run_sweep({**spec["sweep"], "device": spec.get("device")}, result, tag, framework, path, config,
                  train_batches)


def run_sweep(sweep, result, tag, framework, path, base, train_batches):
    """Throughput only, in the same process after the main run (the framework is imported and set
    up already): for each hidden size a fresh model, the first step and `warmup` steps left out,
    then at most `iters` timed steps, stopping after `budget_s` seconds once 3 are timed."""
    from common.batches import training_steps
    from common.frameworks import make_model
    from common.weights import init_weights

    chars = base.batch_size * base.seq_length
    for H in sweep["hidden_sizes"]:
        row = {"hidden_size": H, "step_times_s": [], "losses": [], "status": "ok"}
        result["sweep"].append(row)
        try:
            config = base.replace(hidden_size=H)
            model = make_model(framework, config, init_weights(config), path=path, **model_options(sweep, framework))
            started, last_print = None, time.perf_counter()
            for step, x, y, new_epoch in training_steps(train_batches, 1 + sweep["warmup"] + sweep["iters"]):
                if new_epoch:
                    model.reset_state()
                start = time.perf_counter()
                loss = model.train_step(x, y)
                end = time.perf_counter()
                row["losses"].append(float(loss))
                if end - last_print > 10:
                    progress(tag, f"hidden {H}: step {step + 1}, {end - start:.1f} s per step")
                    last_print = end
                if not math.isfinite(loss):
                    row["status"] = f"failed: non-finite loss ({loss}) at step {step}"
                    break
                if step > sweep["warmup"]:  # step 0 (tracing) and the warm-up are left out
                    row["step_times_s"].append(end - start)
                    started = started or start
                    if len(row["step_times_s"]) >= 3 and end - started > sweep["budget_s"]:
                        break  # enough for a median; keeps the large sizes affordable
            times = row["step_times_s"]
            if times:
                progress(tag, f"hidden {H}: {chars / statistics.median(times):,.0f} chars/s "
                              f"({len(times)} timed steps)")
        except Exception as e:
            row["status"] = f"failed: {type(e).__name__}: {e}"
            progress(tag, f"hidden {H}: {row['status']}")
        write_result(result["out"], result)  # what is done so far survives a later timeout


def run_gemm(spec, result):
    """Median time of a float32 (n, n) @ (n, n) product after warm-up, at the given threads."""
    lib, n, reps, threads = spec["lib"], spec["n"], spec["reps"], spec["threads"]
    setup(lib, threads)
    if lib == "numpy":
        import numpy as np
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        matmul = lambda: a @ b  # noqa: E731
        result["version"] = f"numpy {np.__version__}"
    elif lib == "torch":
        import torch
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(n, n, generator=g, dtype=torch.float32) for _ in range(2))
        matmul = lambda: torch.mm(a, b)  # noqa: E731  (CPU: returns when done)
        result["version"] = f"torch {torch.__version__}"
    else:
        raise ValueError(f"unknown matmul library {lib!r}")
    for _ in range(2):
        matmul()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        matmul()
        times.append(time.perf_counter() - start)
    times.sort()
    result["times_s"] = times
    result["median_s"] = times[len(times) // 2]
    result["gflops"] = 2 * n ** 3 / result["median_s"] / 1e9
    progress(f"gemm-{lib}", f"{n}x{n} float32: {result['gflops']:.1f} GFLOP/s")
    result["status"] = "ok"


# ---------------------------------------------------------------------------------------------
# The grid (benchmarks/grid.py): start-up, training throughput at many shapes, generation latency

def model_options(spec, framework):
    """CharLSTM's keyword arguments for spec["device"]: torch's only (Keras and numpy place work
    as their backends do; the row records where with device_used)."""
    device = spec.get("device") or "cpu"
    return {"device": device} if framework == "torch" and device != "cpu" else {}


def run_grid(spec, result):
    """Import, build and first step timed apart at the first cell; each cell's throughput after its
    first step (at least min_steps timed, then until budget_s); generation latency at the end."""
    from common.batches import Batches, split
    from common.frameworks import make_model, model_class
    from common.weights import init_weights

    tag, framework, path = spec["impl"], spec["framework"], spec["path"]
    start = time.perf_counter()  # before anything imports numpy: its import counts for numpy's rows
    info = setup(framework, spec["threads"])
    model_class(framework, path)  # the implementation's module, and what it imports
    result["framework_version"] = info["version"]
    result["startup"] = {"import_s": time.perf_counter() - start}
    corpus, base, _, _ = load_data({**spec, "val_every": 0})
    train = split(corpus.data)[0]
    options = model_options(spec, framework)
    result["cells"], result["generation"] = [], []
    for n, cell in enumerate(spec["cells"]):
        row = {**cell, "status": "failed: did not finish", "step_times_s": [], "losses": []}
        result["cells"].append(row)
        try:
            config = base.replace(**{k: cell[k] for k in ("batch_size", "hidden_size", "seq_length")})
            batches = Batches(train, config.batch_size, config.seq_length, "train")
            weights = init_weights(config)
            built = time.perf_counter()
            model = make_model(framework, config, weights, path=path, **options)
            row["build_s"] = time.perf_counter() - built
            result["device"] = device_used(framework, model, info)
            grid_steps(model, batches, row, spec)
            if n == 0:
                result["startup"].update(build_s=row["build_s"], first_step_s=row["first_step_s"])
            times = row["step_times_s"]
            progress(tag, f"B={config.batch_size} H={config.hidden_size} T={config.seq_length}: "
                          f"{config.batch_size * config.seq_length / statistics.median(times):,.0f} chars/s "
                          f"({len(times)} timed steps)")
        except Exception as e:  # one shape failing (memory, a framework limit) must not cost the others
            row["status"] = f"failed: {type(e).__name__}: {e}"
            progress(tag, f"{cell}: {row['status']}")
        write_result(spec["out"], result)  # what is done so far survives a later timeout
    gen = spec.get("generation")
    for B in (gen or {}).get("batch_sizes", ()):
        row = {"batch_size": B, "hidden_size": gen["hidden_size"], "status": "failed: did not finish"}
        result["generation"].append(row)
        try:
            config = base.replace(hidden_size=gen["hidden_size"], batch_size=B)
            model = make_model(framework, config, init_weights(config), path=path, **options)
            result["device"] = device_used(framework, model, info)
            row["times_s"] = generation_latency(model, corpus.vocab, B, gen["chars"], gen["warmup"],
                                                gen["budget_s"], seed=config.seed)[0]
            row["status"] = "ok"
            progress(tag, f"generation B={B}: {1e3 * statistics.median(row['times_s']):.2f} ms per character")
        except Exception as e:
            row["status"] = f"failed: {type(e).__name__}: {e}"
            progress(tag, f"generation B={B}: {row['status']}")
        write_result(spec["out"], result)
    result["status"] = "ok"


def grid_steps(model, batches, row, spec):
    """Train `model` on `batches`: the first step timed apart, then at least spec["min_steps"] timed
    steps, stopping once spec["budget_s"] seconds of them have passed or spec["max_steps"] ran."""
    from common.batches import training_steps

    timed_since = None
    for step, x, y, new_epoch in training_steps(batches, 1 + spec["max_steps"]):
        if new_epoch:
            model.reset_state()
        start = time.perf_counter()
        loss = model.train_step(x, y)  # a python float: the device has finished the step
        end = time.perf_counter()
        row["losses"].append(float(loss))
        if not math.isfinite(loss):
            row["status"] = f"failed: non-finite loss ({loss}) at step {step}"
            return
        if step == 0:
            row["first_step_s"] = end - start
            continue
        row["step_times_s"].append(end - start)
        timed_since = timed_since or start
        if len(row["step_times_s"]) >= spec["min_steps"] and end - timed_since > spec["budget_s"]:
            break
    row["status"] = "ok"


def generation_latency(model, vocab, batch_size, length, warmup, budget_s, seed=0):
    """(seconds per character, ids drawn): the sampling loop's own path, one character at a time with
    the carried state. Batch 1 is common.sampling.stream itself (each next() after the first draw
    is one forward of shape (1, 1) and one draw); B > 1 is the same loop over B streams (carried_ids).
    The first `warmup` characters (and the prime's forward) are left out; stops after `length`
    characters or once `budget_s` seconds are timed (at least 3 characters)."""
    from common.sampling import default_prime, stream

    total = length + warmup + 2  # one more than is timed: the last draw runs no forward
    if batch_size == 1:
        chars = stream(model, vocab, total, seed=seed)
        next(chars)  # the prime, as text: nothing computed yet
        draws = (vocab.encode(c)[0] for c in chars)
    else:
        draws = carried_ids(model, vocab.encode(default_prime(vocab)), batch_size, total, seed)
    times, ids, timed = [], [], 0.0
    while len(times) < length:
        start = time.perf_counter()
        ids.append(next(draws))
        end = time.perf_counter()
        if len(ids) > warmup + 1:  # the first draw also ran the prime's forward
            times.append(end - start)
            timed += end - start
            if len(times) >= 3 and timed > budget_s:
                break
    return times, ids


def carried_ids(model, prime, batch_size, length, seed):
    """B streams sampled side by side from `prime` (ids (P,)), as common.sampling.sample_carried
    does for one: yields ids (B,), one character per stream per forward of shape (B, 1)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    logits, state = model.forward(np.tile(prime, (batch_size, 1)), state=None)  # (B, P, V)
    for k in range(length):
        z = np.asarray(logits, dtype=np.float64)[:, -1]  # (B, V): common.sampling.probabilities, row by row
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        ids = (p.cumsum(axis=1) < rng.random((batch_size, 1))).sum(axis=1).clip(0, p.shape[1] - 1)
        yield ids
        if k + 1 < length:
            logits, state = model.forward(ids[:, None].astype(np.int64), state=state)  # (B, 1, V)


MODES = {"train": run_train, "gemm": run_gemm, "grid": run_grid}


def write_result(out, result):
    tmp = Path(f"{out}.part")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)


def main(argv=None):
    p = argparse.ArgumentParser(description="One benchmark run of one implementation (see the module docstring).")
    p.add_argument("--spec", required=True, help="the run as JSON: mode, framework, path, config, out, ...")
    spec = json.loads(p.parse_args(argv).spec)
    for name, value in thread_env(spec["threads"]).items():
        os.environ.setdefault(name, value)  # before numpy, torch or TensorFlow is imported
    from threadpoolctl import threadpool_limits
    limits = threadpool_limits(limits=spec["threads"])  # numpy's BLAS, in every worker  # noqa: F841

    from common.errors import RosettaError
    result = {"mode": spec["mode"], "impl": spec.get("impl"), "out": spec["out"], "status": "failed: did not finish",
              "steps": [], "val": [], "sweep": []}
    try:
        MODES[spec["mode"]](spec, result)
    except RosettaError as e:  # e.g. a framework that cannot be imported: its message says what to do
        result["status"] = f"failed: {e}"
        progress(spec.get("impl") or spec["mode"], result["status"])
    except Exception as e:
        traceback.print_exc()
        result["status"] = f"failed: {type(e).__name__}: {e}"
    result["peak_rss_mb"] = result.get("peak_rss_mb") or peak_rss_mb()
    write_result(spec["out"], result)


if __name__ == "__main__":
    main()
