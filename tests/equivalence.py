"""The cross-framework equivalence checks that test_torch.py and test_keras.py share.

A framework runs only in a subprocess: `run_cases` runs impl_probe.run_probe for every case of one
framework (and that framework's independent oracle) in ONE process, since importing torch or
TensorFlow costs seconds and each case milliseconds. numpy_impl runs in the pytest process on the
same batch, state and training text (impl_probe.probe_inputs), with the optimizer formula of the
framework it is compared with, on each of its paths (the lesson "cell" and the tuned "fast"): every
path of the framework is held to both. Targets: float64 logits within 1e-10, gradients within 1e-9,
10 training steps of each optimizer with clipping active within 1e-9; float32 within 1e-4.

The paths come from common.frameworks.PATHS: PATHS["torch"], PATHS["keras"] for the framework's
tests, PATHS["numpy"] for the numpy references.
"""

import json
import subprocess
import sys

import numpy as np
from conftest import ROOT
from impl_probe import probe_inputs

from common.batches import training_steps
from common.config import Config
from common.dropout import dropout_masks
from common.frameworks import PATHS, model_class
from common.training import step_options
from common.weights import init_weights

SMALL = dict(vocab_size=11, hidden_size=12, num_layers=2, batch_size=3, seq_length=5,
             learning_rate=0.05, clip_norm=0.05, seed=7)  # clip_norm 0.05: every step clips (checked)
STEPS = 10
OPTIMIZERS = ("sgd", "adagrad", "adam")
TOLERANCE = {"float64": {"logits": 1e-10, "grads": 1e-9, "loss": 1e-9},
             "float32": {"logits": 1e-4, "grads": 1e-4, "loss": 1e-4}}



def cases(framework, paths=None):
    """(kind, path, dtype, optimizer) of `framework`'s subprocess: float64 for every path (default
    PATHS[framework]) and optimizer, float32 Adam, the oracle."""
    paths = PATHS[framework] if paths is None else paths
    return ([("impl", path, "float64", optimizer) for path in paths for optimizer in OPTIMIZERS]
            + [("impl", path, "float32", "adam") for path in paths] + [("oracle", None, "float64", "sgd")])

RUN_CASES = f"""
import importlib, json, sys, numpy as np
sys.path.insert(0, "tests")
from common.config import Config
from impl_probe import run_probe
framework, out, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
oracle = importlib.import_module(f"{{framework}}_oracle").oracle
for n, (kind, path, config) in enumerate(cases):
    config = Config(**config)
    result = run_probe(framework, path, config, 0, {STEPS}) if kind == "impl" else oracle(config)
    np.savez(f"{{out}}/case-{{n}}.npz", **result)
"""


# issue 18: dropout on every layer's output and a warm-up + cosine schedule, passed as the loop does
REGULARIZED = dict(dropout=0.3, schedule="cosine", warmup_steps=3, decay_steps=8, lr_floor=0.2)


def config(dtype="float64", optimizer="adam", **extra):
    return Config(**{**SMALL, **extra}, dtype=dtype, optimizer=optimizer)


def numpy_reference(config, formula, train_steps=STEPS, data_seed=0, path="cell"):
    """What impl_probe records, computed with numpy_impl's `path` in this process, plus grad_norm:
    the global gradient norm of every training step, before clipping."""
    x, y, state, batches = probe_inputs(config, data_seed, train_steps)
    model = model_class("numpy", path)(config, init_weights(config), path=path, formula=formula)
    logits, new_state = model.forward(x, state=state)
    out = {"logits": logits, "loss": np.array(model.evaluate(x, y, state=state))}
    for l, (h, c) in enumerate(new_state):
        out[f"state_h{l}"], out[f"state_c{l}"] = h, c
    masks = dropout_masks(config, 0)
    for name, g in model.gradients(x, y, state=state, **({"masks": masks} if masks else {})).items():
        out[f"grad/{name}"] = g
    losses, norms, carried = [], [], None
    for step, xb, yb, new_epoch in training_steps(batches, train_steps):
        if new_epoch or not batches.carries_state:  # target "last": every window from zeros
            model.reset_state()
            carried = None
        extra = step_options(config, step, train_steps)  # dropout masks, scheduled lr: as common/training.py
        grads = model.gradients(xb, yb, state=carried, **({"masks": extra["masks"]} if "masks" in extra else {}))
        norms.append(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values())))  # before clipping
        carried = model.forward(xb, state=carried)[1]
        losses.append(model.train_step(xb, yb, **extra))
    out["train_loss"], out["grad_norm"] = np.array(losses), np.array(norms)
    for name, w in model.get_weights().items():
        out[f"weights/{name}"] = w
    return out


def run_specs(script, framework, tmp, keys, specs, env=None, timeout=600):
    """Run `script` (python -c script framework tmp specs-json) in one fresh process, which writes
    tmp/case-{n}.npz for the n-th spec; dict key -> that case's arrays, `keys` in the specs' order."""
    proc = subprocess.run([sys.executable, "-c", script, framework, str(tmp), json.dumps(specs)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"{framework} cases failed:\n{proc.stderr[-3000:]}"
    results = {}
    for n, key in enumerate(keys):
        with np.load(tmp / f"case-{n}.npz") as f:
            results[key] = {k: f[k] for k in f.files}
    return results


def run_cases(tmp, framework, formula, paths=None, env=None):
    """dict (kind, path, dtype, optimizer) -> arrays for every case of `framework` (kind "impl"),
    its oracle, and the numpy references (kind "numpy", path each of PATHS["numpy"]; path None is
    the lesson, "cell") with the optimizer `formula`."""
    keys = cases(framework, paths)
    specs = [(kind, path, config(dtype, optimizer).to_dict()) for kind, path, dtype, optimizer in keys]
    results = run_specs(RUN_CASES, framework, tmp, keys, specs, env)
    for dtype, optimizer in sorted({(dtype, optimizer) for _, _, dtype, optimizer in keys}):
        for path in PATHS["numpy"]:
            results[("numpy", path, dtype, optimizer)] = numpy_reference(config(dtype, optimizer), formula, path=path)
        results[("numpy", None, dtype, optimizer)] = results[("numpy", "cell", dtype, optimizer)]
    return results


def run_regularized(tmp, framework, formula, paths=None, env=None, optimizers=("sgd", "adam")):
    """dict (kind, path, "float64", optimizer) -> arrays with REGULARIZED on: `framework`'s paths in
    one subprocess, numpy's paths here; check with check_regularized."""
    paths = PATHS[framework] if paths is None else paths
    keys = [("impl", path, "float64", optimizer) for path in paths for optimizer in optimizers]
    specs = [(kind, path, config(dtype, optimizer, **REGULARIZED).to_dict()) for kind, path, dtype, optimizer in keys]
    results = run_specs(RUN_CASES, framework, tmp, keys, specs, env)
    for optimizer in optimizers:
        for path in PATHS["numpy"]:
            results[("numpy", path, "float64", optimizer)] = numpy_reference(
                config("float64", optimizer, **REGULARIZED), formula, path=path)
    return results


def check_regularized(runs, path, optimizer):
    """float64 logits, gradients (under step 0's masks) and ten steps (masks and lr per step) of
    `path` against both numpy paths, to the unchanged tolerances."""
    for numpy_path in PATHS["numpy"]:
        want = runs[("numpy", numpy_path, "float64", optimizer)]
        forward_float64(runs[("impl", path, "float64", optimizer)], want)
        training_float64(runs[("impl", path, "float64", optimizer)], want, optimizer)


def assert_close(got, want, atol, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape}, numpy_impl {want.shape}"
    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    assert err <= atol, f"{what}: max difference {err:.3g} > {atol:g}"


def check_forward_float64(runs, path):
    for numpy_path in PATHS["numpy"]:
        forward_float64(runs[("impl", path, "float64", "sgd")], runs[("numpy", numpy_path, "float64", "sgd")])


def forward_float64(got, want):
    tol = TOLERANCE["float64"]
    assert got["logits"].dtype == np.float64
    assert_close(got["logits"], want["logits"], tol["logits"], "logits")
    for l in range(SMALL["num_layers"]):
        assert_close(got[f"state_h{l}"], want[f"state_h{l}"], tol["logits"], f"h of layer {l}")
        assert_close(got[f"state_c{l}"], want[f"state_c{l}"], tol["logits"], f"c of layer {l}")
    assert_close(got["loss"], want["loss"], tol["loss"], "evaluate")
    grads = sorted(k for k in want if k.startswith("grad/"))
    assert sorted(k for k in got if k.startswith("grad/")) == grads
    for k in grads:
        assert got[k].dtype == np.float64, k
        assert_close(got[k], want[k], tol["grads"], k)


def check_training_float64(runs, path, optimizer):
    for numpy_path in PATHS["numpy"]:
        training_float64(runs[("impl", path, "float64", optimizer)], runs[("numpy", numpy_path, "float64", optimizer)],
                         optimizer)


def training_float64(got, want, optimizer):
    assert np.all(want["grad_norm"] > 2 * SMALL["clip_norm"]), f"clipping inactive: norms {want['grad_norm']}"
    assert len(got["train_loss"]) == STEPS
    assert np.ptp(got["train_loss"]) > 1e-3  # the weights moved
    assert_close(got["train_loss"], want["train_loss"], TOLERANCE["float64"]["loss"], f"{optimizer} losses")
    for k in (k for k in want if k.startswith("weights/")):
        assert got[k].dtype == np.float64, k
        assert_close(got[k], want[k], 1e-9, f"{k} after {STEPS} {optimizer} steps")


def check_float32(runs, path):
    for numpy_path in PATHS["numpy"]:
        float32(runs[("impl", path, "float32", "adam")], runs[("numpy", numpy_path, "float32", "adam")])


def float32(got, want):
    tol = TOLERANCE["float32"]
    for k in ("logits", "state_h0", "state_c1", *(k for k in want if k.startswith(("grad/", "weights/")))):
        assert got[k].dtype == np.float32, f"{k} is {got[k].dtype}, not the config's float32"
        assert_close(got[k], want[k], tol["grads"], f"float32 {k}")
    assert_close(got["loss"], want["loss"], tol["loss"], "float32 evaluate")
    assert_close(got["train_loss"], want["train_loss"], tol["loss"], "float32 adam losses")


def check_oracle(runs, framework):
    oracle = runs[("oracle", None, "float64", "sgd")]
    others = {**{f"{framework} {path}": runs[("impl", path, "float64", "sgd")] for path in PATHS[framework]
                 if ("impl", path, "float64", "sgd") in runs},
              **{f"numpy {path}": runs[("numpy", path, "float64", "sgd")] for path in PATHS["numpy"]}}
    for who, got in others.items():
        for k in ("logits", "state_h0", "state_c0", "state_h1", "state_c1"):
            assert_close(got[k], oracle[k], 1e-10, f"{who} {k} against the {framework} oracle")
