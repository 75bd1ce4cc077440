"""torch_impl against numpy_impl and against an independent nn.LSTM oracle.

PyTorch runs only in subprocesses: one runs impl_probe.run_probe for every torch case and the
oracle (tests/torch_oracle.py), one checks imports. numpy_impl runs here, on the same batch,
state and training text (impl_probe.probe_inputs). Targets (CONTEXT.md):
float64 logits within 1e-10, gradients within 1e-9, 10 training steps of each optimizer with
clipping active within 1e-9; float32 within 1e-4.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from impl_probe import probe_inputs

from common.batches import training_steps
from common.config import Config
from common.weights import init_weights

SMALL = dict(vocab_size=11, hidden_size=12, num_layers=2, batch_size=3, seq_length=5,
             learning_rate=0.05, clip_norm=0.05, seed=7)  # clip_norm 0.05: every step clips (checked)
STEPS = 10
PATHS = ("layer", "cell")
OPTIMIZERS = ("sgd", "adagrad", "adam")
TOLERANCE = {"float64": {"logits": 1e-10, "grads": 1e-9, "loss": 1e-9},
             "float32": {"logits": 1e-4, "grads": 1e-4, "loss": 1e-4}}


def config(dtype="float64", optimizer="adam"):
    return Config(**SMALL, dtype=dtype, optimizer=optimizer)


def numpy_reference(config, train_steps=STEPS, data_seed=0):
    """What impl_probe records, computed with numpy_impl (formula="pytorch") in this process,
    plus grad_norm: the global gradient norm of every training step, before clipping."""
    from numpy_impl.model import CharLSTM

    x, y, state, batches = probe_inputs(config, data_seed, train_steps)
    model = CharLSTM(config, init_weights(config), formula="pytorch")
    logits, new_state = model.forward(x, state=state)
    out = {"logits": logits, "loss": np.array(model.evaluate(x, y, state=state))}
    for l, (h, c) in enumerate(new_state):
        out[f"state_h{l}"], out[f"state_c{l}"] = h, c
    for name, g in model.gradients(x, y, state=state).items():
        out[f"grad/{name}"] = g
    losses, norms, carried = [], [], None
    for _, xb, yb, new_epoch in training_steps(batches, train_steps):
        if new_epoch:
            model.reset_state()
            carried = None
        grads = model.gradients(xb, yb, state=carried)  # what train_step is about to clip
        norms.append(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values())))
        carried = model.forward(xb, state=carried)[1]
        losses.append(model.train_step(xb, yb))
    out["train_loss"], out["grad_norm"] = np.array(losses), np.array(norms)
    for name, w in model.get_weights().items():
        out[f"weights/{name}"] = w
    return out


# Every torch case in ONE subprocess: a torch import (with torch.optim, which pulls in
# torch._dynamo) costs seconds, the cases themselves milliseconds. Each case records what
# conftest.run_probe would (impl_probe.run_probe), or the oracle's logits.
TORCH_CASES = [("torch", path, "float64", optimizer) for path in PATHS for optimizer in OPTIMIZERS]
TORCH_CASES += [("torch", path, "float32", "adam") for path in PATHS] + [("oracle", None, "float64", "sgd")]
RUN_CASES = f"""
import json, sys, numpy as np
sys.path.insert(0, "tests")
from common.config import Config
from impl_probe import run_probe
from torch_oracle import oracle
for n, (kind, path, config) in enumerate(json.loads(sys.argv[2])):
    config = Config(**config)
    result = run_probe("torch", path, config, 0, {STEPS}) if kind == "torch" else oracle(config)
    np.savez(f"{{sys.argv[1]}}/case-{{n}}.npz", **result)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """dict (kind, path, dtype, optimizer) -> arrays, for every torch case and numpy reference."""
    tmp = tmp_path_factory.mktemp("torch")
    cases = [(kind, path, config(dtype, optimizer).to_dict()) for kind, path, dtype, optimizer in TORCH_CASES]
    proc = subprocess.run([sys.executable, "-c", RUN_CASES, str(tmp), json.dumps(cases)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"torch cases failed:\n{proc.stderr[-3000:]}"
    results = {}
    for n, key in enumerate(TORCH_CASES):
        with np.load(tmp / f"case-{n}.npz") as f:
            results[key] = {k: f[k] for k in f.files}
    for dtype, optimizer in sorted({(dtype, optimizer) for _, _, dtype, optimizer in TORCH_CASES}):
        results[("numpy", None, dtype, optimizer)] = numpy_reference(config(dtype, optimizer))
    return results


def assert_close(got, want, atol, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape}, numpy_impl {want.shape}"
    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    assert err <= atol, f"{what}: max difference {err:.3g} > {atol:g}"


@pytest.mark.parametrize("path", PATHS)
def test_forward_state_loss_and_gradients_match_numpy_float64(runs, path):
    got, want = runs[("torch", path, "float64", "sgd")], runs[("numpy", None, "float64", "sgd")]
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


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("path", PATHS)
def test_training_with_clipping_matches_numpy_float64(runs, path, optimizer):
    got, want = runs[("torch", path, "float64", optimizer)], runs[("numpy", None, "float64", optimizer)]
    assert np.all(want["grad_norm"] > 2 * SMALL["clip_norm"]), f"clipping inactive: norms {want['grad_norm']}"
    assert len(got["train_loss"]) == STEPS
    assert np.ptp(got["train_loss"]) > 1e-3  # the weights moved
    assert_close(got["train_loss"], want["train_loss"], TOLERANCE["float64"]["loss"], f"{optimizer} losses")
    for k in (k for k in want if k.startswith("weights/")):  # b = bias_ih + bias_hh on the layer path
        assert_close(got[k], want[k], 1e-9, f"{k} after {STEPS} {optimizer} steps")


@pytest.mark.parametrize("path", PATHS)
def test_float32_matches_numpy(runs, path):
    got, want = runs[("torch", path, "float32", "adam")], runs[("numpy", None, "float32", "adam")]
    tol = TOLERANCE["float32"]
    for k in ("logits", "state_h0", "state_c1", *(k for k in want if k.startswith(("grad/", "weights/")))):
        assert got[k].dtype == np.float32, f"{k} is {got[k].dtype}, not the config's float32"
        assert_close(got[k], want[k], tol["grads"], f"float32 {k}")
    assert_close(got["loss"], want["loss"], tol["loss"], "float32 evaluate")
    assert_close(got["train_loss"], want["train_loss"], tol["loss"], "float32 adam losses")


def test_oracle_agrees_with_both_paths_and_numpy(runs):
    oracle = runs[("oracle", None, "float64", "sgd")]
    others = {"torch layer": runs[("torch", "layer", "float64", "sgd")],
              "torch cell": runs[("torch", "cell", "float64", "sgd")],
              "numpy": runs[("numpy", None, "float64", "sgd")]}
    for who, got in others.items():
        for k in ("logits", "state_h1", "state_c1"):
            assert_close(got[k], oracle[k], 1e-10, f"{who} {k} against the nn.LSTM oracle")


def test_torch_impl_imports_no_keras_and_keeps_its_promises():
    """In a fresh process: no tensorflow/keras import, unknown path refused, global dtype untouched,
    evaluate/gradients/forward leave the carried training state alone."""
    script = """
import sys, numpy as np, torch
import torch_impl.model as tm
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
assert not bad, f"torch_impl imported {bad[:5]}"
from common.config import Config
from common.errors import ConfigError
from common.weights import init_weights
config = Config(vocab_size=7, hidden_size=4, num_layers=2, batch_size=2, seq_length=3, dtype="float64")
try:
    tm.CharLSTM(config, init_weights(config), path="rnn")
    raise AssertionError("path='rnn' accepted")
except ConfigError as e:
    assert "layer" in str(e) and "cell" in str(e), str(e)
rng = np.random.default_rng(0)
x, y = rng.integers(0, 7, (2, 3)), rng.integers(0, 7, (2, 3))
for path in ("layer", "cell"):
    model = tm.CharLSTM(config, init_weights(config), path=path)
    assert torch.get_default_dtype() == torch.float32, "the model changed torch's default dtype"
    model.train_step(x, y)
    carried = [(h.clone(), c.clone()) for h, c in model.state]
    before = model.get_weights()
    model.forward(x); model.evaluate(x, y); model.gradients(x, y)
    for (h, c), (h2, c2) in zip(carried, model.state):
        assert torch.equal(h, h2) and torch.equal(c, c2), "carried state touched"
        assert not h2.requires_grad, "carried state not detached"
    after = model.get_weights()
    assert all(np.array_equal(before[k], after[k]) for k in before), "weights changed without a step"
    after["lstm.0.b"][0] += 1  # get_weights returns copies, not views of the parameters
    assert not np.array_equal(model.get_weights()["lstm.0.b"], after["lstm.0.b"])
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
