"""The machine's float32 roofline, measured rather than assumed: what a share of peak is a share of.

    python -m benchmarks.roofline --out /tmp/roof            # about 30 s on 2 cores; --quick: seconds

Four steps, each written down in roofline.json (and environment.json's "roofline") and roofline.csv:

1. The CPU record (cpu_record): model name, family/model/stepping, the ISA flags that matter, physical
   cores and SMT siblings (/proc/cpuinfo and sysfs), the clock under load on all cores, steal time,
   and every thread or BLAS pin in the environment.
2. The derived FMA ceiling (fma_ceiling): cores x FMA units x lanes x 2 x clock per instruction set,
   each factor with the assumption behind it (FMA_UNITS below).
3. The FMA microbenchmark: KERNEL_C, compiled at run time with the system's `cc` and loaded with
   ctypes; independent FMA chains per instruction set on 1 thread and on all cores, and a chain of
   dependent integer adds (one cycle each) that measures the clock. Each thread reports its best
   short slice, so a slice in which the hypervisor or a neighbour took the core does not count.
4. The achievable matrix-multiply rate of every library (numpy with no kernel pin, torch,
   TensorFlow, JAX), each in its own process at the benchmark's thread count, at a large square
   size and at the LSTM's own shapes (lstm_shapes); the best repetition counts.

The two ceilings (ceilings): the FMA microbenchmark's rate at the benchmark's thread count and the
best measured matrix multiply. check_shares refuses any figure above 100 % of either.
"""

import argparse
import ctypes
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.errors import RosettaError

ROOT = Path(__file__).resolve().parents[1]
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
# Variables that pin a thread pool, a BLAS kernel or a library's code path (TF_CLI_* is Terraform's)
PIN_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO", "BLIS_", "VECLIB_", "NUMEXPR_",
                "DNNL_", "ONEDNN_", "TF_", "XLA_", "JAX_", "TORCH_", "ATEN_", "KERAS_", "MALLOC_")
KERNEL_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # unset for the matrix multiplies: no kernel pin
ROOFLINE_COLUMNS = ["lib", "shape", "m", "k", "n", "threads", "reps", "median_s", "best_s", "gflops",
                    "median_gflops", "kernel", "status"]
SETTINGS = {  # seconds of measurement: (default, --quick)
    "square_s": (1.0, 0.2), "shape_s": (0.3, 0.05), "fma_s": (0.3, 0.05), "clock_s": (0.3, 0.05)}


class ShareError(RosettaError):
    """A figure above 100 % of a measured ceiling: one of the two is wrong, so nothing is published."""


# ---------------------------------------------------------------------------------------------
# 1. The CPU record

def parse_cpuinfo(text):
    """/proc/cpuinfo's text -> model, vendor, family/model/stepping, ISA flags, logical CPUs, physical
    cores (distinct physical id/core id pairs), SMT siblings per core and the mean "cpu MHz"."""
    blocks = [dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines()) if _)
              for block in re.split(r"\n\s*\n", text.strip())]
    cpus = [b for b in blocks if "processor" in b]
    if not cpus:
        return {}
    first = cpus[0]
    flags = set(first.get("flags", "").split())
    cores = {(b.get("physical id", "0"), b["core id"]) for b in cpus if "core id" in b}
    mhz = [float(b["cpu MHz"]) for b in cpus if re.fullmatch(r"[\d.]+", b.get("cpu MHz", ""))]
    number = lambda key: int(first[key], 0) if re.fullmatch(r"\d+|0x[0-9a-f]+", first.get(key, "")) else None  # noqa: E731
    return {"model_name": first.get("model name"), "vendor": first.get("vendor_id"),
            "family": number("cpu family"), "model_number": number("model"), "stepping": number("stepping"),
            "isa_flags": [f for f in ISA_FLAGS if f in flags], "logical_cpus": len(cpus),
            "physical_cores": len(cores) or None,
            "smt_per_core": len(cpus) // len(cores) if cores else None,
            "cpuinfo_mhz": round(statistics.mean(mhz), 1) if mhz else None}


def sysfs_topology(root="/sys/devices/system/cpu"):
    """Physical cores and SMT siblings as the kernel's topology files give them, or {}."""
    groups = set()
    for path in Path(root).glob("cpu[0-9]*/topology/thread_siblings_list"):
        try:
            groups.add(path.read_text().strip())
        except OSError:
            pass
    if not groups:
        return {}
    sizes = [len(expand_cpu_list(g)) for g in groups]
    return {"physical_cores": len(groups), "smt_per_core": max(sizes)}


def expand_cpu_list(text):
    """'0-2,5' -> [0, 1, 2, 5]."""
    out = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def thread_pins(environ=None):
    """Every variable in the environment that pins threads, a BLAS kernel or a code path."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in sorted(environ) if k.startswith(PIN_PREFIXES) and not k.startswith("TF_CLI_")}


def proc_stat(text=None):
    """The all-CPU line of /proc/stat: {"busy": ticks, "steal": ticks, "total": ticks}, or None."""
    try:
        text = Path("/proc/stat").read_text() if text is None else text
        fields = [int(v) for v in text.splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"busy": user + nice + system + irq + softirq, "steal": steal,
            "total": user + nice + system + idle + iowait + irq + softirq + steal}


def steal_since(before, after=None):
    """Steal time between two proc_stat() readings: the share of all CPU time the hypervisor gave to
    other guests, and in seconds per CPU; None where /proc/stat is not there."""
    after = proc_stat() if after is None else after
    if not before or not after or after["total"] <= before["total"]:
        return None
    ticks, total = after["steal"] - before["steal"], after["total"] - before["total"]
    cpus = os.cpu_count() or 1
    return {"share": round(ticks / total, 4), "seconds_per_cpu": round(ticks / os.sysconf("SC_CLK_TCK") / cpus, 2)}


def cpu_record(cpuinfo=None, environ=None, sysfs="/sys/devices/system/cpu", clock=None, steal=None):
    """environment.json's "cpu": parse_cpuinfo of /proc/cpuinfo (or the text given), the sysfs topology,
    usable cores, the clock measured under load (microbenchmark's "clock"), steal time and the pins."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    record = parse_cpuinfo(cpuinfo)
    topology = sysfs_topology(sysfs) if sysfs else {}
    record["sysfs"] = topology
    if not record.get("physical_cores") and topology:
        record.update(physical_cores=topology["physical_cores"], smt_per_core=topology["smt_per_core"])
    record.setdefault("logical_cpus", os.cpu_count())
    record["usable_cpus"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    record["clock"], record["steal"] = clock, steal
    record["pins"] = thread_pins(environ)
    return record


# ---------------------------------------------------------------------------------------------
# 2. The derived ceiling: cores x FMA units x lanes x 2 x clock

def fma_units(record, isa):
    """(units, lanes, assumption): float32 FMAs the core's pipes start per cycle for `isa` ("avx2" or
    "avx512"), from the vendor, family and model (AMD: family 0x17 Zen 1/2, 0x19 Zen 3/4, 0x1a Zen 5)."""
    vendor, family, model = record.get("vendor"), record.get("family"), record.get("model_number") or 0
    flags = set(record.get("isa_flags", []))
    if isa == "avx512" and "avx512f" not in flags or isa == "avx2" and not {"avx2", "fma"} <= flags:
        return 0, 0, f"the CPU does not report {'avx512f' if isa == 'avx512' else 'avx2 and fma'}"
    if vendor == "AuthenticAMD" and family == 0x17 and model < 0x30:
        return 1, 8, "Zen 1: two 128-bit FMA pipes, a 256-bit FMA takes both (1 x 8 lanes a cycle)"
    if vendor == "AuthenticAMD" and family in (0x17, 0x19) and isa == "avx2":
        return 2, 8, "Zen 2/3/4: two 256-bit FMA pipes (FP0, FP1)"
    if vendor == "AuthenticAMD" and family == 0x19:  # Zen 4: 0x10-0x1f, 0x60-0x7f, 0xa0-0xaf
        return 2, 8, ("Zen 4: AVX-512 is double-pumped, a 512-bit FMA runs as two 256-bit halves on the "
                      "two 256-bit FMA pipes, so 2 units x 8 lanes, the same as AVX2")
    if vendor == "AuthenticAMD" and family == 0x1a:
        return 2, 8 if isa == "avx2" else 16, ("Zen 5 (server and desktop): two 512-bit FMA pipes; "
                                               "the mobile parts double-pump, half of this")
    if vendor == "GenuineIntel" and isa == "avx2":
        return 2, 8, "Intel since Haswell: two 256-bit FMA ports (0 and 1)"
    if vendor == "GenuineIntel":
        return 2, 16, ("Intel Xeon with AVX-512: two 512-bit FMA units (ports 0+1 fused and port 5); "
                       "client parts and some Xeon Silver/Bronze have one, half of this")
    return 2, 8 if isa == "avx2" else 16, f"unknown microarchitecture ({vendor} family {family}): two FMA units assumed"


def fma_ceiling(record, isa):
    """The derived float32 FMA ceiling for `isa`: a pure function of a CPU record. {"gflops", each
    factor, "assumptions"}; the clock is the measured all-core clock, else /proc/cpuinfo's MHz."""
    units, lanes, why = fma_units(record, isa)
    clock = record.get("clock") or {}
    if clock.get("all_core_ghz"):
        ghz, clock_says = clock["all_core_ghz"], (f"{clock['all_core_ghz']:.2f} GHz measured on all "
                                                  f"{clock.get('threads', '?')} cores by the dependent-add chain")
    elif record.get("cpuinfo_mhz"):
        ghz, clock_says = record["cpuinfo_mhz"] / 1e3, ("/proc/cpuinfo's cpu MHz, not measured (in a virtual "
                                                       "machine often the nominal clock)")
    else:
        ghz, clock_says = None, "no clock known"
    cores = record.get("physical_cores") or record.get("logical_cpus")
    gflops = cores * units * lanes * 2 * ghz if cores and units and ghz else None
    return {"isa": isa, "gflops": gflops, "cores": cores, "fma_units": units, "lanes": lanes, "flops_per_fma": 2,
            "clock_ghz": ghz, "assumptions": [
                f"{cores} physical cores ({record.get('smt_per_core') or 1} hardware thread(s) each; SMT "
                "siblings share the FMA units, so they add none)", f"FMA units x float32 lanes: {units} x "
                f"{lanes}: {why}", "2 FLOPs per FMA (a multiply and an add)", f"clock: {clock_says}"]}


# ---------------------------------------------------------------------------------------------
# 3. The FMA microbenchmark

CHAINS = 12  # independent FMA chains: more than latency (4-5 cycles) x 2 pipes, so the pipes never wait


def fma_kernel(name, target, vec, prefix):
    """C source of one ISA's kernel: CHAINS accumulators in registers, `iters` rounds of CHAINS FMAs."""
    decl = ", ".join(f"c{j} = {prefix}_set1_ps({j}.0f)" for j in range(CHAINS))
    body = " ".join(f"c{j} = {prefix}_fmadd_ps(c{j}, a, b);" for j in range(CHAINS))
    total = " + ".join(f"first(c{j})" for j in range(CHAINS))
    return (f'__attribute__((target("{target}"))) static float first_{name}({vec} v) {{ return {prefix}_cvtss_f32(v); }}\n'
            f'__attribute__((target("{target}"))) static float {name}(long iters) {{\n'
            f"    {vec} a = {prefix}_set1_ps(0.999999f), b = {prefix}_set1_ps(1e-7f), {decl};\n"
            f"    for (long i = 0; i < iters; i++) {{ {body} }}\n"
            f"    return {total.replace('first(', f'first_{name}(')};\n}}\n")


ADD20 = "add %1, %0\\n\\t" * 20
KERNEL_C = r"""
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
""" + fma_kernel("fma_avx2", "avx2,fma", "__m256", "_mm256") + fma_kernel("fma_avx512", "avx512f", "__m512", "_mm512") + r"""
/* 20 dependent register adds per round: one cycle each on every x86 core, so rounds x 20 / seconds is the clock */
static uint64_t add_chain(long iters) {
    uint64_t x = 0, one = 1;
    for (long i = 0; i < iters; i++) __asm__ volatile("ADD20" : "+r"(x) : "r"(one));
    return x;
}

typedef struct { int kind; long iters; double seconds; double best; double median_sum; long slices; double sink; } job_t;
static pthread_barrier_t start;

static void *work(void *p) {
    job_t *j = p;
    pthread_barrier_wait(&start);
    double began = now();
    j->best = 1e30;
    while (now() - began < j->seconds || j->slices < 3) {
        double t = now();
        j->sink += j->kind == 0 ? (double)add_chain(j->iters) : j->kind == 1 ? fma_avx2(j->iters) : fma_avx512(j->iters);
        t = now() - t;
        if (t < j->best) j->best = t;
        j->median_sum += t;
        j->slices++;
    }
    return 0;
}

/* kind 0: the add chain, 1: AVX2 FMA, 2: AVX-512 FMA, on `threads` threads started together, each
   repeating slices of `iters` rounds for `seconds`; best[t] is thread t's fastest slice, mean[t] its mean. */
int run(int kind, int threads, long iters, double seconds, double *best, double *mean) {
    pthread_t tid[256];
    job_t jobs[256];
    if (threads < 1 || threads > 256) return -1;
    pthread_barrier_init(&start, 0, threads);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job_t){kind, iters, seconds, 0, 0, 0, 0};
        if (pthread_create(&tid[t], 0, work, &jobs[t])) return -1;
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], 0);
        best[t] = jobs[t].best;
        mean[t] = jobs[t].median_sum / jobs[t].slices;
    }
    pthread_barrier_destroy(&start);
    return 0;
}
""".replace("ADD20", ADD20)
# rounds per slice (a slice is about 0.1-0.3 ms: short enough that many run untouched by a neighbour)
KINDS = {"clock": (0, 20, 50_000), "avx2": (1, 2 * 8 * CHAINS, 10_000), "avx512": (2, 2 * 16 * CHAINS, 5_000)}


def compile_kernel(workdir):
    """KERNEL_C built with the system's `cc` into workdir and loaded: (library, compiler), or (None, reason)."""
    src, lib = Path(workdir) / "fma.c", Path(workdir) / "fma.so"
    src.write_text(KERNEL_C)
    try:
        built = subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-pthread", str(src), "-o", str(lib)],
                               capture_output=True, text=True, timeout=60)
        version = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"no C compiler ({e})"
    if built.returncode != 0:
        return None, f"cc failed: {built.stderr.strip()[-300:]}"
    kernel = ctypes.CDLL(str(lib))
    kernel.run.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_double,
                           ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double)]
    return kernel, version


def kernel_rate(kernel, kind, threads, seconds):
    """(best, mean) operations per second summed over `threads` threads: FLOP/s, or cycles/s for "clock"."""
    code, per_round, rounds = KINDS[kind]
    best, mean = (ctypes.c_double * threads)(), (ctypes.c_double * threads)()
    if kernel.run(code, threads, rounds, seconds, best, mean) != 0:
        raise RuntimeError(f"could not start {threads} threads")
    work = rounds * per_round
    return sum(work / b for b in best), sum(work / m for m in mean)


def microbenchmark(record, threads, seconds, clock_seconds):
    """The clock (1 thread and all cores) and each ISA's FMA rate on 1 thread, on all cores and on the
    benchmark's `threads`: {"compiler", "clock", "fma": [rows]}, or {"compiler": None, "reason"}."""
    flags = set(record.get("isa_flags", []))
    isas = [isa for isa, needs in (("avx2", {"avx2", "fma"}), ("avx512", {"avx512f"})) if needs <= flags]
    cores = record.get("usable_cpus") or os.cpu_count()
    counts = sorted({1, cores, threads})
    with tempfile.TemporaryDirectory(prefix="rosetta-fma-") as work:
        kernel, compiler = compile_kernel(work)
        if kernel is None:
            return {"compiler": None, "reason": compiler, "fma": []}
        best1, _ = kernel_rate(kernel, "clock", 1, clock_seconds)
        best_all, mean_all = kernel_rate(kernel, "clock", cores, clock_seconds)
        clock = {"one_core_ghz": round(best1 / 1e9, 3), "all_core_ghz": round(best_all / cores / 1e9, 3),
                 "all_core_mean_ghz": round(mean_all / cores / 1e9, 3), "threads": cores,
                 "how": "a chain of dependent register adds (1 cycle each) on every core at once, best slice"}
        rows = []
        for isa in isas:
            for n in counts:
                best, mean = kernel_rate(kernel, isa, n, seconds)
                rows.append({"isa": isa, "threads": n, "gflops": best / 1e9, "mean_gflops": mean / 1e9})
    return {"compiler": compiler, "chains": CHAINS, "clock": clock, "fma": rows}


# ---------------------------------------------------------------------------------------------
# 4. The achievable matrix multiply of every library

LIBRARIES = ("numpy", "torch", "tensorflow", "jax")


def lstm_shapes(config):
    """(name, m, k, n) of the LSTM's own products for a config: the recurrent product of one step,
    the input projection of a whole sequence (every layer above the first), and the head."""
    B, T, H, V = config.batch_size, config.seq_length, config.hidden_size, config.vocab_size
    return [("recurrent (B x H) @ (H x 4H)", B, H, 4 * H),
            ("input projection (B*T x H) @ (H x 4H)", B * T, H, 4 * H),
            ("head (B*T x H) @ (H x V)", B * T, H, V)]


def matmul_env(lib, threads):
    """The library's process environment: no kernel pin (KERNEL_PINS unset), every pool at `threads`."""
    from benchmarks.worker import thread_env
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_PINS}
    env.update(thread_env(threads, "jax" if lib == "jax" else None))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def measure_library(lib, shapes, threads, seconds, timeout=300):
    """roofline.csv rows of one library, measured in its own process (python -m benchmarks.roofline
    --matmul lib); a failure (missing package, crash, timeout) is each row's status."""
    spec = {"lib": lib, "threads": threads, "shapes": shapes, "seconds": seconds}
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.roofline", "--matmul", json.dumps(spec)],
                              cwd=ROOT, env=matmul_env(lib, threads), capture_output=True, text=True, timeout=timeout)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        got = json.loads(lines[-1]) if lines else {"status": f"failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1][:300]}"}
    except subprocess.TimeoutExpired:
        got = {"status": f"failed: timeout after {timeout} s"}
    rows = []
    for (name, m, k, n, _), r in zip(shapes, got.get("rows") or [{}] * len(shapes)):
        rows.append({"lib": lib, "shape": name, "m": m, "k": k, "n": n, "threads": threads, "kernel": got.get("kernel"),
                     "status": got.get("status", "failed") if got.get("status") != "ok" else r.get("status", "ok"),
                     **{key: r.get(key) for key in ("reps", "median_s", "best_s", "gflops", "median_gflops")}})
    return rows


def matmul_function(lib, m, k, n):
    """A function computing one float32 (m, k) @ (k, n) product with `lib` and returning when done."""
    if lib == "numpy":
        import numpy as np
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
        return lambda: a @ b
    if lib == "torch":
        import torch
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
        return lambda: torch.mm(a, b)  # CPU: returns when done
    if lib == "tensorflow":
        import tensorflow as tf
        a, b = tf.random.stateless_normal((m, k), (0, 0)), tf.random.stateless_normal((k, n), (0, 1))
        return lambda: tf.linalg.matmul(a, b)  # eager on the CPU: synchronous
    if lib == "jax":
        import jax
        import jax.numpy as jnp
        a, b = jax.random.normal(jax.random.key(0), (m, k)), jax.random.normal(jax.random.key(1), (k, n))
        f = jax.jit(jnp.matmul)
        return lambda: f(a, b).block_until_ready()
    raise ValueError(f"unknown matmul library {lib!r}")


def library_kernel(lib, threads):
    """Set the library's threads; which kernel it runs, as far as it says (numpy: threadpoolctl's
    architecture of its BLAS, the kernel OpenBLAS picked for this CPU)."""
    if lib == "numpy":
        import numpy  # noqa: F401  (loads the BLAS threadpoolctl inspects)
        from threadpoolctl import threadpool_info, threadpool_limits
        threadpool_limits(limits=threads)
        return "; ".join(f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')}"
                         for p in threadpool_info() if p.get("user_api") == "blas") or None
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
        return f"torch {torch.__version__}, ATen CPU capability {torch.backends.cpu.get_cpu_capability()}"
    if lib == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        return f"tensorflow {tf.__version__}, oneDNN {os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')}"
    import jax
    return f"jax {jax.__version__} on {jax.default_backend()}"


def time_matmul(matmul, flops, seconds):
    """Two warm-up products, then products for `seconds` (at least 3): reps, median and best time."""
    for _ in range(2):
        matmul()
    times, began = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - began < seconds and len(times) < 2000:
        start = time.perf_counter()
        matmul()
        times.append(time.perf_counter() - start)
    median, best = statistics.median(times), min(times)
    return {"reps": len(times), "median_s": median, "best_s": best, "gflops": flops / best / 1e9,
            "median_gflops": flops / median / 1e9, "status": "ok"}


def matmul_child(spec):
    """In the library's own process: every shape measured, one JSON line on stdout."""
    lib, out = spec["lib"], {"rows": []}
    try:
        out["kernel"] = library_kernel(lib, spec["threads"])
        for name, m, k, n, seconds in spec["shapes"]:
            out["rows"].append(time_matmul(matmul_function(lib, m, k, n), 2 * m * k * n, seconds))
        out["status"] = "ok"
    except ImportError as e:
        out["status"] = f"failed: {lib} cannot be imported ({e})"
    except Exception as e:  # a library's crash is this row's status, not the run's end
        out["status"] = f"failed: {type(e).__name__}: {e}"
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------
# The ceilings, and the refusal

def ceilings(roof):
    """{"fma": (GFLOP/s, what), "matmul": (GFLOP/s, what)} of a roofline dict; a ceiling that was not
    measured is left out (the FMA one falls back to the derived figure when nothing could compile)."""
    out = {}
    threads = roof.get("threads")
    fma = [r for r in (roof.get("microbenchmark") or {}).get("fma", []) if r["threads"] == threads]
    if fma:
        top = max(fma, key=lambda r: r["gflops"])
        out["fma"] = (top["gflops"], f"the measured FMA rate ({top['isa']}, {threads} threads)")
    else:
        derived = [d for d in roof.get("derived", []) if d.get("gflops")]
        if derived:
            top = max(derived, key=lambda d: d["gflops"])
            out["fma"] = (top["gflops"], f"the derived FMA ceiling ({top['isa']}; no microbenchmark)")
    ok = [r for r in roof.get("matmul", []) if r.get("status") == "ok" and r.get("gflops")]
    if ok:
        top = max(ok, key=lambda r: r["gflops"])
        out["matmul"] = (top["gflops"], f"the measured matmul rate ({top['lib']}, {top['shape']})")
    return out


def shares(rows, ceiling_of):
    """Each row ({"what", "gflops"}) with its share of each ceiling ({name: (GFLOP/s, what)})."""
    return [{**r, **{f"share_{name}": r["gflops"] / g for name, (g, _) in ceiling_of.items() if g}} for r in rows]


def check_shares(rows, ceiling_of):
    """ShareError naming every row ({"what", "gflops"}, optionally "against": the ceilings' names that
    apply) above 100 % of a ceiling ({name: (GFLOP/s, what)}): a figure cannot beat what the machine
    measurably does, so one of the two figures is wrong."""
    wrong = [f"{r['what']} at {r['gflops']:.1f} GFLOP/s is {100 * r['gflops'] / g:.1f} % of {what} "
             f"{g:.1f} GFLOP/s" for r in rows for name, (g, what) in ceiling_of.items()
             if g and r.get("gflops") and r["gflops"] > g and name in r.get("against", ceiling_of)]
    if wrong:
        raise ShareError("; ".join(wrong) + ". A share of peak cannot pass 100 %: the FLOP count, the time "
                         "measured or the ceiling is wrong, so the report was not written; re-measure the "
                         "ceilings (python -m benchmarks.roofline) or find which figure is wrong.")


# ---------------------------------------------------------------------------------------------
# The whole measurement

def measure(out, threads, config, square=2048, quick=False, say=None):
    """The roofline of this machine at the benchmark's `threads` (run it when no worker runs): the CPU
    record, the derived ceilings, the microbenchmark and every library's matrix multiply; writes
    out/roofline.csv and out/roofline.json, returns the dict (its "stat" is /proc/stat at the start)."""
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    setting = {k: v[1 if quick else 0] for k, v in SETTINGS.items()}
    stat, started = proc_stat(), time.perf_counter()
    record = cpu_record()
    micro = microbenchmark(record, threads, setting["fma_s"], setting["clock_s"])
    record["clock"] = micro.get("clock")
    derived = [fma_ceiling(record, isa) for isa in ("avx2", "avx512")]
    say(f"roofline: {record.get('model_name')}, {record.get('physical_cores')} cores, clock under load "
        f"{(micro.get('clock') or {}).get('all_core_ghz', '?')} GHz; FMA "
        + (", ".join(f"{r['isa']} x{r['threads']} {r['gflops']:.1f}" for r in micro["fma"]) + " GFLOP/s"
           if micro["fma"] else f"not measured: {micro.get('reason')}"))
    shapes = [("square (n x n) @ (n x n)", square, square, square, setting["square_s"])]
    shapes += [(*s, setting["shape_s"]) for s in lstm_shapes(config)]
    matmul = []
    for lib in LIBRARIES:
        rows = measure_library(lib, shapes, threads, setting["square_s"])
        say(f"roofline: {lib}: " + ", ".join(f"{r['m']}x{r['k']}x{r['n']} {r['gflops']:.1f}" for r in rows
                                             if r["status"] == "ok") + f" GFLOP/s ({rows[0]['status']})")
        matmul += rows
    record["steal"] = steal_since(stat)
    roof = {"cpu": record, "derived": derived, "microbenchmark": micro, "matmul": matmul, "threads": threads,
            "quick": quick, "seconds": round(time.perf_counter() - started, 1), "stat": stat}
    roof["ceilings"] = ceilings(roof)
    out = Path(out)
    write_rows(out / "roofline.csv", matmul)
    tmp = out / "roofline.json.part"
    tmp.write_text(json.dumps(roof, indent=1))
    os.replace(tmp, out / "roofline.json")
    return roof


def gemm_rows(roof):
    """gemm.csv's rows (benchmarks/run.py GEMM_COLUMNS): each library's square product, its best rate."""
    return [{"lib": r["lib"], "n": r["n"], "threads": r["threads"], "reps": r.get("reps"), "median_s": r.get("median_s"),
             "gflops": r.get("gflops"), "status": r["status"]}
            for r in roof["matmul"] if r["shape"].startswith("square")]


def run_record(roof):
    """environment.json's CPU record: the roofline's, with the steal time from its start until now
    (the whole run, when written at the end); without a roofline, cpu_record() with no clock."""
    if not roof:
        return cpu_record()
    return {**roof["cpu"], "steal": steal_since(roof.get("stat")), "steal_during_roofline": roof["cpu"].get("steal")}


def write_rows(path, rows):
    import csv
    tmp = Path(f"{path}.part")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROOFLINE_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: "" if r.get(k) is None else r[k] for k in ROOFLINE_COLUMNS} for r in rows)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.roofline", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="roofline", help="folder for roofline.csv and roofline.json (default %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="the benchmark's thread count (default %(default)s)")
    p.add_argument("--square", type=int, default=2048, help="n of the square product (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="shorter measurements: seconds, not half a minute")
    p.add_argument("--matmul", help=argparse.SUPPRESS)  # internal: one library's process
    args = p.parse_args(argv)
    if args.matmul:
        return matmul_child(json.loads(args.matmul))
    from common.config import Config
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        measure(args.out, args.threads, Config.from_dict({"vocab_size": 65, "hidden_size": 256, "num_layers": 2}), args.square, args.quick)
    except RosettaError as e:
        print(f"python -m benchmarks.roofline: error: {e}", file=sys.stderr)
        return 2
    print(Path(args.out) / "roofline.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
