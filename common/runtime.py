"""Process start-up settings for `rosetta train` and `sample`: threads, waiting, the allocator.

    from common import runtime
    chosen = runtime.prepare(threads=None, malloc="steady")   # before any framework is imported

Three settings, each made before numpy's BLAS, torch, TensorFlow or JAX is loaded (they read
their thread counts and waiting policy once, at import):

  threads   --threads N fixes every pool to N, and so does a thread variable the user set
            (OMP_NUM_THREADS, common.frameworks.THREAD_VARIABLES). Otherwise the cores that are free: the usable
            cores (sched_getaffinity) less those other processes kept busy over a short window of
            /proc/stat, at least 1. A BLAS or OpenMP pool with a thread on a core that another
            process holds waits for that thread at every barrier; on a 2-core machine with two
            busy processes that cost numpy a factor of 50 (README: Speed on a busy machine).
  waiting   numpy's OpenBLAS threads that find no work spin for 2**20 cycles (about half a
            millisecond), not OpenBLAS' 2**28 (a tenth of a second), before they sleep
            (OPENBLAS_THREAD_TIMEOUT=20): long enough to span the gaps between one step's products,
            short enough to leave a core to whatever else runs between steps. 2**4 cost numpy-fast
            a seventh of its speed at 2 threads on an idle machine (README: Speed on a busy machine). torch's GNU OpenMP keeps its own short spin: OMP_WAIT_POLICY=PASSIVE
            halved torch-layer at 2 threads on a quiet machine (README: Speed on a busy machine),
            and the free-core count already keeps its threads off busy cores. A value the user set
            in the environment is kept.
  malloc    "steady" (the default): glibc's mmap threshold fixed at 32 MiB and its trim threshold
            at 1 GiB, so a training step's freed buffers serve the next step instead of going back
            to the kernel and returning as fresh zeroed pages (benchmarks/worker.py STEADY_MALLOC,
            README: The allocator). Set here with mallopt through ctypes, which takes effect for every
            allocation after the call, and in the environment (MALLOC_*_) for child processes
            (--workers). "default": glibc's own dynamic thresholds. No glibc (macOS, musl): nothing.

Framework-free: this module imports no framework, and is called by common/cli.py before one is.
"""

import ctypes
import ctypes.util
import os
import time

from common.frameworks import THREAD_VARIABLES

# glibc's malloc.h: mallopt parameter numbers
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 32 * 2**20, "MALLOC_TRIM_THRESHOLD_": 2**30}
MALLOC_CHOICES = ("steady", "default")
# numpy's OpenBLAS threads with no work spin 2**N cycles before they sleep (OpenBLAS' own N is 28)
PASSIVE_WAITING = {"OPENBLAS_THREAD_TIMEOUT": "20"}
BUSY_WINDOW_S = 0.1  # how long /proc/stat is watched for other processes' work
BUSY_CORE = 0.5      # a core counts as taken when others kept it busy more than this share of the window


def usable_cores():
    """The cores this process may run on (its affinity mask), or os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_times():
    """(busy, total) jiffies of all cores from /proc/stat's first line; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def busy_cores(window=BUSY_WINDOW_S):
    """How many cores' worth of work other processes did over `window` seconds: all cores' busy time
    from /proc/stat less this process's own CPU time, since this thread sleeps but another thread of
    this process may not (numpy's OpenBLAS threads spin at start-up for OpenBLAS' own tenth of a
    second when OPENBLAS_THREAD_TIMEOUT is not set before it loads); None where /proc/stat is missing."""
    before, own_before, start = cpu_times(), time.process_time(), time.monotonic()
    if before is None:
        return None
    time.sleep(window)
    after, own, elapsed = cpu_times(), time.process_time() - own_before, time.monotonic() - start
    busy, total = after[0] - before[0], after[1] - before[1]
    everyone = (os.cpu_count() or 1) * busy / total if total > 0 else 0.0
    return max(0.0, everyone - own / elapsed) if elapsed > 0 else everyone


def free_cores(window=BUSY_WINDOW_S):
    """The usable cores less those other processes keep busy (a core is taken above BUSY_CORE of it),
    at least 1."""
    cores, busy = usable_cores(), busy_cores(window)
    if busy is None:
        return cores
    return max(1, min(cores, (os.cpu_count() or 1) - int(busy + 1 - BUSY_CORE)))


def set_passive_waiting(environ=os.environ):
    """PASSIVE_WAITING into the environment, keeping any of these the user set; the names set."""
    added = [name for name in PASSIVE_WAITING if name not in environ]
    for name in added:
        environ[name] = PASSIVE_WAITING[name]
    return added


def libc():
    """glibc as a ctypes library with mallopt, or None (another C library)."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return lib if hasattr(lib, "mallopt") and hasattr(lib, "gnu_get_libc_version") else None
    except OSError:
        return None


def set_malloc(malloc="steady", environ=os.environ):
    """The allocator setting: "steady" calls mallopt for this process and puts STEADY_MALLOC's
    variables into the environment for child processes (a value the user set is kept); "default"
    changes nothing. Returns {parameter: mallopt's return value (1 = done)}; {} when nothing was set."""
    if malloc not in MALLOC_CHOICES:
        raise ValueError(f"malloc must be one of {', '.join(MALLOC_CHOICES)}, got {malloc!r}")
    lib = libc() if malloc == "steady" else None
    if lib is None:
        return {}
    for name, value in STEADY_MALLOC.items():
        environ.setdefault(name, str(value))
    return {"M_MMAP_THRESHOLD": lib.mallopt(M_MMAP_THRESHOLD, int(environ["MALLOC_MMAP_THRESHOLD_"])),
            "M_TRIM_THRESHOLD": lib.mallopt(M_TRIM_THRESHOLD, int(environ["MALLOC_TRIM_THRESHOLD_"]))}


def prepare(threads=None, malloc="steady", environ=os.environ):
    """Every start-up setting, before a framework is imported: passive waiting, the allocator, and the
    thread count. Returns `threads` when given; None when the environment already names a thread count
    (THREAD_VARIABLES, e.g. OMP_NUM_THREADS: the user's choice, left to the frameworks); else the free cores."""
    set_passive_waiting(environ)
    set_malloc(malloc, environ)
    if threads is not None or any(name in environ for name in THREAD_VARIABLES):
        return threads
    return free_cores()
