"""The roofline (benchmarks/roofline.py): a CPU record parsed from /proc/cpuinfo text, the derived FMA
ceiling as arithmetic on a known record, the FMA microbenchmark against physics, numpy's matrix
multiply with no kernel pin, and the report's refusal of a share above 100 % of a ceiling."""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import roofline
from benchmarks.report import write_report
from benchmarks.run import SUMMARY_COLUMNS, SWEEP_COLUMNS, write_csv

ROOT = Path(__file__).resolve().parents[1]

# /proc/cpuinfo of the 2-core machine the reference run used (KVM guest; lines the parser does not
# read left out, the flags line whole)
FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht "
         "syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid "
         "extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
         "tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a "
         "misalignsse 3dnowprefetch osvw topoext cpuid_fault vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms "
         "invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl "
         "xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes "
         "vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm")
PROCESSOR = """processor\t: {n}
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
cpu MHz\t\t: 2596.146
cache size\t: 1024 KB
physical id\t: 0
siblings\t: 2
core id\t\t: {core}
cpu cores\t: 2
apicid\t\t: {n}
flags\t\t: {flags}
bogomips\t: 5192.29
power management:
"""
CPUINFO = "\n".join(PROCESSOR.format(n=n, core=n, flags=FLAGS) for n in range(2))


def zen3(cores=2, ghz=2.45):
    return {"vendor": "AuthenticAMD", "family": 0x19, "model_number": 0x01, "physical_cores": cores,
            "isa_flags": ["avx", "avx2", "fma"], "clock": {"all_core_ghz": ghz, "threads": cores}}


# ---------------------------------------------------------------------------------------------
# The CPU record

def test_cpuinfo_of_this_machine_is_parsed():
    r = roofline.parse_cpuinfo(CPUINFO)
    assert (r["model_name"], r["vendor"], r["family"], r["model_number"], r["stepping"]) == \
        ("AMD EPYC", "AuthenticAMD", 25, 17, 1)
    assert r["isa_flags"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
                              "avx512_vnni", "avx512_bf16"]  # no avx512_fp16, no AMX
    assert (r["logical_cpus"], r["physical_cores"], r["smt_per_core"], r["cpuinfo_mhz"]) == (2, 2, 1, 2596.1)


def test_smt_siblings_share_a_core_and_add_no_fma_units():
    text = "\n".join(PROCESSOR.format(n=n, core=n // 2, flags=FLAGS) for n in range(4))  # 0,0,1,1
    r = roofline.parse_cpuinfo(text)
    assert (r["logical_cpus"], r["physical_cores"], r["smt_per_core"]) == (4, 2, 2)
    r["clock"] = {"all_core_ghz": 3.0, "threads": 4}
    assert roofline.fma_ceiling(r, "avx2")["gflops"] == pytest.approx(2 * 2 * 8 * 2 * 3.0)


def test_pins_steal_and_the_record_of_this_process(tmp_path):
    env = {"OPENBLAS_CORETYPE": "Haswell", "OMP_NUM_THREADS": "2", "XLA_FLAGS": "--x", "TF_CLI_CONFIG_FILE": "/t",
           "HOME": "/root", "MKL_DEBUG_CPU_TYPE": "5"}
    assert roofline.thread_pins(env) == {"MKL_DEBUG_CPU_TYPE": "5", "OMP_NUM_THREADS": "2",
                                         "OPENBLAS_CORETYPE": "Haswell", "XLA_FLAGS": "--x"}
    before = roofline.proc_stat("cpu  100 0 50 800 10 0 5 20 0 0\ncpu0 1 2 3\n")
    after = roofline.proc_stat("cpu  300 0 100 1400 10 0 5 80 0 0\n")
    assert before == {"busy": 155, "steal": 20, "total": 985}
    assert roofline.steal_since(before, after)["share"] == pytest.approx(60 / (1895 - 985), abs=1e-4)
    for cpu in range(4):  # two cores with two hardware threads each, as sysfs writes them
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text("0-1\n" if cpu < 2 else "2,3\n")
    record = roofline.cpu_record(cpuinfo="", environ=env, sysfs=tmp_path)
    assert (record["physical_cores"], record["smt_per_core"]) == (2, 2) and record["pins"]["OMP_NUM_THREADS"] == "2"


# ---------------------------------------------------------------------------------------------
# The derived ceiling: cores x FMA units x lanes x 2 x clock

def test_a_known_cpu_record_gives_the_known_ceiling():
    d = roofline.fma_ceiling(zen3(), "avx2")
    assert d["gflops"] == pytest.approx(2 * 2 * 8 * 2 * 2.45) == pytest.approx(156.8)
    assert (d["cores"], d["fma_units"], d["lanes"], d["flops_per_fma"]) == (2, 2, 8, 2)
    assert any("2.45 GHz measured" in a for a in d["assumptions"])
    assert roofline.fma_ceiling(zen3(), "avx512")["gflops"] is None  # Zen 3 has no AVX-512
    this = {**roofline.parse_cpuinfo(CPUINFO), "clock": {"all_core_ghz": 3.69, "threads": 2}}  # Zen 4
    avx2, avx512 = roofline.fma_ceiling(this, "avx2"), roofline.fma_ceiling(this, "avx512")
    assert avx2["gflops"] == avx512["gflops"] == pytest.approx(236.16)  # AVX-512 double-pumped: no gain
    assert "double-pumped" in " ".join(avx512["assumptions"])
    unmeasured = roofline.fma_ceiling(roofline.parse_cpuinfo(CPUINFO), "avx2")
    assert unmeasured["gflops"] == pytest.approx(2 * 32 * 2.5961)
    assert "/proc/cpuinfo" in " ".join(unmeasured["assumptions"])
    xeon = {"vendor": "GenuineIntel", "family": 6, "model_number": 0x55, "physical_cores": 4,
            "isa_flags": ["avx2", "fma", "avx512f"], "clock": {"all_core_ghz": 2.0}}
    assert roofline.fma_ceiling(xeon, "avx512")["gflops"] == pytest.approx(4 * 2 * 16 * 2 * 2.0)


# ---------------------------------------------------------------------------------------------
# Measurements: physics, not timing

@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler: the roofline falls back to the derived ceiling")
def test_the_fma_microbenchmark_stays_below_the_derived_ceiling():
    record = roofline.cpu_record()
    micro = roofline.microbenchmark(record, 1, 0.05, 0.05)
    assert micro["compiler"], micro.get("reason")
    clock = micro["clock"]["all_core_ghz"]
    assert 0.3 < clock < 7 and 0.3 < micro["clock"]["one_core_ghz"] < 7
    record["clock"] = micro["clock"]
    assert micro["fma"], "the CPU reports no AVX2/FMA and no AVX-512"
    for row in micro["fma"]:
        derived = roofline.fma_ceiling(record, row["isa"])
        per_thread = derived["gflops"] / derived["cores"]
        assert math.isfinite(row["gflops"]) and 0 < row["gflops"] < 1.1 * per_thread * row["threads"], row
        assert 0 < row["mean_gflops"] <= row["gflops"] * 1.0001


def test_numpy_without_a_pin_reports_its_own_kernel(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")  # an SSE3 kernel; a pin would give that
    assert "OPENBLAS_CORETYPE" not in roofline.matmul_env("numpy", 1)
    rows = roofline.measure_library("numpy", [["square", 128, 128, 128, 0.02], ["head", 64, 32, 65, 0.02]], 1, 0.02)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["gflops"] > 0 and r["reps"] >= 3 and r["best_s"] <= r["median_s"] for r in rows)
    pinned = subprocess.run([sys.executable, "-c", "import numpy, threadpoolctl; print(threadpoolctl.threadpool_info()"
                             "[0]['architecture'])"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    kernel = rows[0]["kernel"]  # "openblas <version> <architecture>"
    assert kernel.startswith("openblas ") and len(kernel.split()) == 3 and pinned and pinned not in kernel, (kernel, pinned)


# ---------------------------------------------------------------------------------------------
# The refusal above 100 %

CEILINGS = {"fma": (236.2, "the measured FMA rate (avx512, 2 threads)"),
            "matmul": (250.6, "the measured matmul rate (numpy, square)")}


def test_a_share_above_100_percent_is_refused_naming_both_figures():
    with pytest.raises(roofline.ShareError) as e:
        roofline.check_shares([{"what": "torch-layer's model FLOPs", "gflops": 320.0},
                               {"what": "numpy-cell's model FLOPs", "gflops": 20.0}], {"matmul": CEILINGS["matmul"]})
    assert str(e.value).startswith("torch-layer's model FLOPs at 320.0 GFLOP/s is 127.7 % of the measured matmul "
                                   "rate (numpy, square) 250.6 GFLOP/s. A share") and "numpy-cell" not in str(e.value)
    with pytest.raises(roofline.ShareError, match="is 101.6 % of the measured FMA rate"):
        roofline.check_shares([{"what": "x", "gflops": 240.0}], CEILINGS)  # below one ceiling, above the other
    roofline.check_shares([{"what": "x", "gflops": 236.2}, {"what": "m", "gflops": 240.0, "against": ["matmul"]}],
                          CEILINGS)  # 100 % exactly, and a matmul row checked only against the FMA ceiling


def write_run(out, chars_per_s, sweep_chars_per_s=None):
    V, H, L = 65, 256, 2
    fpc = 3 * (2 * (V * 4 * H + H * 4 * H) + 2 * (H * 4 * H + H * 4 * H) + 2 * H * V)
    write_csv(out / "summary.csv", SUMMARY_COLUMNS, [
        {"impl": "torch-layer", "framework": "torch", "path": "layer", "status": "ok", "chars_per_s": chars_per_s,
         "flops_per_char": fpc, "vocab_size": V, "hidden_size": H, "num_layers": L, "batch_size": 32,
         "seq_length": 64, "dtype": "float32", "optimizer": "adam", "step_ms_median": 1e3 * 2048 / chars_per_s,
         "step_ms_p10": 1e3 * 2048 / chars_per_s, "step_ms_p90": 1e3 * 2048 / chars_per_s}])
    if sweep_chars_per_s:
        write_csv(out / "sweep.csv", SWEEP_COLUMNS, [{"impl": "torch-layer", "hidden_size": 512, "status": "ok",
                                                       "chars_per_s": sweep_chars_per_s}])
    roof = {"ceilings": CEILINGS, "threads": 2, "matmul": [
        {"lib": "numpy", "shape": "square", "m": 2048, "k": 2048, "n": 2048, "gflops": 250.6, "status": "ok"}]}
    (out / "environment.json").write_text(json.dumps({"roofline": roof, "cpu": {"model_name": "AMD EPYC"}}))
    return fpc


def test_the_report_refuses_and_writes_nothing(tmp_path):
    fpc = write_run(tmp_path, 320e9 / (3 * 1739264))
    assert fpc == 3 * 1739264
    proc = subprocess.run([sys.executable, "-m", "benchmarks.report", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert "torch-layer's model FLOPs at 320.0 GFLOP/s is 127.7 % of the measured matmul rate (numpy, square) " \
           "250.6 GFLOP/s" in message and "135.5 % of the measured FMA rate" in message
    assert "numpy's 2048x2048x2048 matmul at 250.6 GFLOP/s is 106.1 % of the measured FMA rate" in message
    assert not (tmp_path / "REPORT.md").exists() and not list(tmp_path.glob("*.png"))


def test_the_sweep_is_checked_at_every_hidden_size(tmp_path):
    write_run(tmp_path, 10e9 / (3 * 1739264), sweep_chars_per_s=1e5)  # H=512: 1e5 x 17.2 MFLOP = 1719 GFLOP/s
    env = json.loads((tmp_path / "environment.json").read_text())
    env["roofline"]["matmul"][0]["gflops"] = 200.0
    (tmp_path / "environment.json").write_text(json.dumps(env))
    with pytest.raises(roofline.ShareError, match=r"torch-layer's model FLOPs at H=512 \(sweep\) at [\d.]+ GFLOP/s"):
        write_report(tmp_path)
    write_run(tmp_path, 10e9 / (3 * 1739264), sweep_chars_per_s=1e3)
    (tmp_path / "environment.json").write_text(json.dumps(env))
    text = write_report(tmp_path).read_text(encoding="utf-8")
    section = text.split("## Roofline")[1].split("\n## ")[0]
    assert "| `torch-layer` | 10.0 | 4.2 % | 4.0 % |" in section
    assert "| `torch-layer at H=512 (sweep)` |" in section
    assert "| `torch-layer` |" in text and "| 4.2 % | 4.0 % |" in text  # the results table's two shares
