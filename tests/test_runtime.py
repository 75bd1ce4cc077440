"""common/runtime.py: the start-up settings of `rosetta train` and `sample`.

The allocator setting is checked where it acts, in a fresh process: mallopt's return values, glibc's
own count of mmapped blocks (mallinfo2) for a block between the default and the steady threshold,
and the environment a child process inherits; `--malloc default` leaves all of them alone. The
thread count is checked against /proc/stat with a real busy process beside it, and through the
command line into numpy's BLAS pool.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common import runtime
from common.frameworks import THREAD_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
TEXT = "".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 40)
TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-length", "8", "--iters", "2",
        "--val-every", "0", "--sample-every", "0"]
GLIBC = runtime.libc() is not None
HAS_MALLINFO2 = GLIBC and hasattr(runtime.libc(), "mallinfo2")


def child(code, env_drop=(), env=None, timeout=120):
    """Run `code` in a fresh python with the repository on the path; its stdout parsed as JSON."""
    environ = {k: v for k, v in os.environ.items() if k not in env_drop and not k.startswith("MALLOC_")}
    environ.update(env or {})
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


MMAPPED = """
    import ctypes, json, os
    from common import runtime

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    done = runtime.set_malloc(MODE)
    before = libc.mallinfo2().hblks
    block = libc.malloc(16 * 2**20)  # above glibc's default threshold (128 KiB), below the steady 32 MiB
    mmapped = libc.mallinfo2().hblks - before
    libc.free(block)
    child = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(json.dumps({"done": done, "mmapped": mmapped, "env": child}))
"""


@pytest.mark.skipif(not HAS_MALLINFO2, reason="glibc 2.33 or later (mallinfo2) needed to watch the allocator")
def test_steady_malloc_takes_effect_and_default_leaves_glibc_alone():
    steady = child(MMAPPED.replace("MODE", "'steady'"))
    assert steady["done"] == {"M_MMAP_THRESHOLD": 1, "M_TRIM_THRESHOLD": 1}  # mallopt: 1 = done
    assert steady["mmapped"] == 0  # served from the heap, so freeing it keeps it for the next step
    assert steady["env"] == {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
    default = child(MMAPPED.replace("MODE", "'default'"))
    assert default == {"done": {}, "mmapped": 1, "env": {}}  # glibc's own: the block is its own mapping


def test_a_users_malloc_variable_is_kept(monkeypatch):
    calls = []

    class FakeLibc:  # this pytest process's own allocator stays as it is
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(runtime, "libc", lambda: FakeLibc())
    environ = {"MALLOC_MMAP_THRESHOLD_": str(2**20)}
    assert runtime.set_malloc("steady", environ) == {"M_MMAP_THRESHOLD": 1, "M_TRIM_THRESHOLD": 1}
    assert environ == {"MALLOC_MMAP_THRESHOLD_": str(2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
    assert calls == [(runtime.M_MMAP_THRESHOLD, 2**20), (runtime.M_TRIM_THRESHOLD, 2**30)]
    assert runtime.set_malloc("default", environ) == {} and len(calls) == 2
    with pytest.raises(ValueError, match="steady, default"):
        runtime.set_malloc("sometimes", {})


def test_passive_waiting_keeps_what_the_user_set():
    environ = {}
    assert runtime.set_passive_waiting(environ) == ["OPENBLAS_THREAD_TIMEOUT"]
    assert environ == {"OPENBLAS_THREAD_TIMEOUT": "20"}  # and torch's OpenMP keeps its own spin
    environ = {"OPENBLAS_THREAD_TIMEOUT": "10"}
    assert runtime.set_passive_waiting(environ) == [] and environ == {"OPENBLAS_THREAD_TIMEOUT": "10"}


@pytest.mark.parametrize("busy, cores, free", [(0.0, 2, 2), (0.4, 2, 2), (0.6, 2, 1), (1.0, 2, 1), (1.4, 2, 1),
                                               (2.0, 2, 1), (3.0, 2, 1), (1.0, 8, 7), (2.6, 8, 5)])
def test_free_cores_are_the_usable_ones_less_the_busy_ones(monkeypatch, busy, cores, free):
    monkeypatch.setattr(runtime, "busy_cores", lambda window=None: busy)
    monkeypatch.setattr(runtime, "usable_cores", lambda: cores)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert runtime.free_cores() == free


def test_threads_given_or_named_in_the_environment_are_kept(monkeypatch):
    monkeypatch.setattr(runtime, "free_cores", lambda window=None: 1)
    assert runtime.prepare(3, "default", {}) == 3
    assert runtime.prepare(None, "default", {}) == 1
    assert runtime.prepare(None, "default", {"OMP_NUM_THREADS": "4"}) is None  # left to the frameworks


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="/proc/stat")
def test_a_busy_process_is_seen_in_proc_stat():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        __import__("time").sleep(0.3)
        seen = runtime.busy_cores(0.5)
    finally:
        hog.kill()
        hog.wait()
    assert 0.5 < seen <= os.cpu_count() + 0.01
    assert runtime.free_cores(0.01) >= 1


def test_this_processs_own_threads_are_not_counted_as_another_processs_work(monkeypatch):
    """2 cores over 0.1 s (20 jiffies of all cores): this process's own thread kept one busy (its CPU
    time 0.1 s), and in the second case another process the other one too."""
    for stat_busy, others in ((10, 0.0), (20, 1.0)):
        stat = iter([(1000, 5000), (1000 + stat_busy, 5020)])
        clock, cpu = iter([0.0, 0.1]), iter([3.0, 3.1])
        monkeypatch.setattr(runtime, "cpu_times", lambda: next(stat))
        monkeypatch.setattr(runtime.time, "monotonic", lambda: next(clock))
        monkeypatch.setattr(runtime.time, "process_time", lambda: next(cpu))
        monkeypatch.setattr(runtime.time, "sleep", lambda s: None)
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        assert runtime.busy_cores(0.1) == pytest.approx(others)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="/proc/stat")
def test_a_busy_thread_of_this_process_leaves_the_count_of_other_processes_work():
    """The same measurement with and without a spinning thread of this process: its core is not
    counted (the difference stays well under the core it keeps busy)."""
    import threading
    quiet = runtime.busy_cores(0.3)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)])
    spinner.start()
    try:
        __import__("time").sleep(0.05)
        spinning = runtime.busy_cores(0.3)
    finally:
        stop.set()
        spinner.join()
    assert spinning - quiet < 0.5


CLI = """
    import json, os, sys
    from common import runtime
    runtime.free_cores = lambda window=None: 1  # as if another process held every other core
    from common import cli
    from threadpoolctl import threadpool_info
    status = cli.main(sys.argv[1:])
    pools = [p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"]
    print(json.dumps({"status": status, "openblas": pools,
                      "env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "OMP_", "OPENBLAS_"))}}))
"""


@pytest.mark.parametrize("flags, threads, malloc", [([], 1, "steady"), (["--threads", "2"], 2, "steady"),
                                                    (["--malloc", "default"], 1, "default")])
def test_rosetta_train_starts_with_the_settings(tmp_path, flags, threads, malloc):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    code = CLI.replace("sys.argv[1:]", repr(["train", "--corpus", str(corpus), *TINY, *flags]))
    got = child(code, env_drop=THREAD_VARIABLES + tuple(runtime.PASSIVE_WAITING))
    assert got["status"] == 0
    assert got["openblas"] and set(got["openblas"]) == {threads}
    assert got["env"]["OMP_NUM_THREADS"] == str(threads) and got["env"]["OPENBLAS_THREAD_TIMEOUT"] == "20"
    assert "OMP_WAIT_POLICY" not in got["env"]
    steady = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
    assert {k: v for k, v in got["env"].items() if k.startswith("MALLOC_")} == (steady if malloc == "steady" else {})


def test_a_bad_malloc_choice_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "common.cli", "train", "--malloc", "sometimes"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--malloc" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("malloc", ["steady", "default"])
def test_rosetta_sample_starts_with_the_settings(tmp_path, malloc):
    corpus, ckpt = tmp_path / "tiny.txt", tmp_path / "m.safetensors"
    corpus.write_text(TEXT, encoding="utf-8")
    train = subprocess.run([sys.executable, "-m", "common.cli", "train", "--corpus", str(corpus), *TINY, "--threads", "1",
                            "--save", str(ckpt)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert train.returncode == 0, train.stderr[-2000:]
    code = CLI.replace("sys.argv[1:]", repr(["sample", str(ckpt), "--length", "5", "--malloc", malloc]))
    got = child(code, env_drop=THREAD_VARIABLES + tuple(runtime.PASSIVE_WAITING))
    assert got["status"] == 0 and set(got["openblas"]) == {1} and got["env"]["OPENBLAS_THREAD_TIMEOUT"] == "20"
    malloc_env = {k: v for k, v in got["env"].items() if k.startswith("MALLOC_")}
    assert malloc_env == ({"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
                          if malloc == "steady" else {})
