"""The seed posts' models (issue 14) in every framework and path: the hard sigmoid, many-to-one
windows (target "last"), clipping by value, and the presets through the command line.

- hard_sigmoid: numpy_impl's forward against a forward written here with Keras 3's definition,
  relu6(z + 3) / 6, and its hand-written backward against central differences (float64);
- each of hard_sigmoid, target "last" and clip_value: every framework and path that supports it
  equal to numpy_impl (both numpy paths where they support it) on logits, state, loss, gradients
  and ten Adam steps, float64 to the equivalence tolerances (tests/equivalence.py), each
  framework in its own process, Keras on each backend; nn.LSTM's and numpy fast's refusals of
  hard_sigmoid are one sentence;
- each preset trained five steps by `rosetta train` in numpy, torch and keras (TensorFlow) with
  the same per-step losses.
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, data_dir
from equivalence import SMALL, STEPS, TOLERANCE, assert_close, numpy_reference, run_specs
from impl_probe import probe_inputs

from common.config import Config
from common.errors import ConfigError
from common.frameworks import KERAS_BACKENDS, PATHS, make_model, paths_on
from common.presets import PRESETS
from common.weights import init_weights
from numpy_impl import model as lesson

# each feature as Config fields over equivalence.SMALL (whose clip_norm 0.05 clips every step)
FEATURES = {
    "hard_sigmoid": {"recurrent_activation": "hard_sigmoid"},
    "last": {"target": "last"},
    "clip_value": {"clip_norm": 0.0, "clip_value": 0.01},
}
# the paths that refuse a feature, in one sentence each
REFUSED = {("numpy", "fast", "hard_sigmoid"), ("torch", "layer", "hard_sigmoid")}


def config(feature, dtype="float64", optimizer="adam"):
    return Config(**{**SMALL, **FEATURES[feature], "dtype": dtype, "optimizer": optimizer})


def relu6(z):
    return np.minimum(np.maximum(z, 0.0), 6.0)


# ---------------------------------------------------------------------------------------------
# the hard sigmoid in numpy

def independent_forward(weights, config, x, state):
    """The model's logits (B, T, V) written here from docs/DESIGN.md with Keras 3's hard sigmoid on i, f, o."""
    H, V = config.hidden_size, config.vocab_size
    hard = lambda z: relu6(z + 3.0) / 6.0  # keras/src/backend/tensorflow/nn.py hard_sigmoid
    inputs = np.eye(V)[x]  # (B, T, V)
    for l, (h, c) in enumerate(state):
        W_x, W_h, b = weights[f"lstm.{l}.W_x"], weights[f"lstm.{l}.W_h"], weights[f"lstm.{l}.b"]
        outputs = []
        for t in range(x.shape[1]):
            z = inputs[:, t] @ W_x + h @ W_h + b
            i, f, g, o = hard(z[:, :H]), hard(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), hard(z[:, 3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
            outputs.append(h)
        inputs = np.stack(outputs, axis=1)
    return inputs @ weights["head.W"] + weights["head.b"]


def test_hard_sigmoid_is_keras_3s_definition():
    z = np.array([-10.0, -3.0, -2.9, -1.5, 0.0, 1.5, 2.9, 3.0, 10.0])
    np.testing.assert_array_equal(lesson.hard_sigmoid(z), relu6(z + 3) / 6)
    assert lesson.hard_sigmoid(z).tolist()[:2] == [0.0, 0.0] and lesson.hard_sigmoid(z).tolist()[-2:] == [1.0, 1.0]
    assert lesson.hard_sigmoid(np.float32(0.5)).dtype == np.float32


def test_hard_sigmoid_forward_against_an_independent_forward():
    c = config("hard_sigmoid")
    weights = init_weights(c)
    weights = {k: v * (3.0 if k.startswith("lstm") else 1.0) for k, v in weights.items()}  # saturate some gates
    x, _, state, _ = probe_inputs(c)
    want = independent_forward(weights, c, x, state)
    logits, _ = lesson.CharLSTM(c, weights).forward(x, state)
    assert_close(logits, want, TOLERANCE["float64"]["logits"], "hard_sigmoid logits")
    sigmoid_logits, _ = lesson.CharLSTM(Config(**{**c.to_dict(), "recurrent_activation": "sigmoid"}), weights).forward(x, state)
    assert np.abs(sigmoid_logits - want).max() > 1e-3  # the activation changed the numbers


def test_hard_sigmoid_step_backward_against_central_differences():
    rng = np.random.default_rng(3)
    B, D, H = 3, 4, 5
    x, h, c = rng.normal(0, 1, (B, D)), rng.normal(0, 1, (B, H)), rng.normal(0, 1, (B, H))
    W_x, W_h, b = rng.normal(0, 1.5, (D, 4 * H)), rng.normal(0, 1.5, (H, 4 * H)), rng.normal(0, 1, 4 * H)
    z = x @ W_x + h @ W_h + b
    sigma_z = np.concatenate([z[:, :2 * H], z[:, 3 * H:]], axis=1)
    assert (np.abs(sigma_z) > 3).mean() > 0.1 and (np.abs(sigma_z) < 3).mean() > 0.3  # both sides of the kinks
    assert np.abs(np.abs(sigma_z) - 3).min() > 1e-4  # no kink within the differences' reach
    dh_out, dc_out = rng.normal(0, 1, (B, H)), rng.normal(0, 1, (B, H))

    def step(x, h, c, W_x, W_h, b):  # the lesson's LSTMCell on these weights
        cell = lesson.LSTMCell(D, H, np.float64, "hard_sigmoid")
        cell.W_x[...], cell.W_h[...], cell.b[...] = W_x, W_h, b
        return cell, cell.forward(x, (h, c))

    def scalar(*args):
        h2, c2, _ = step(*args)[1]
        return np.sum(h2 * dh_out) + np.sum(c2 * dc_out)

    args = [x, h, c, W_x, W_h, b]
    cell, (_, _, cache) = step(*args)
    dx, dh_prev, dc_prev, dW_x, dW_h, db = cell.backward(dh_out, dc_out, cache)
    for k, analytic in zip(range(6), (dx, dh_prev, dc_prev, dW_x, dW_h, db)):
        numeric = np.zeros_like(args[k])
        for idx in np.ndindex(args[k].shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[k][idx] += 1e-6
            minus[k][idx] -= 1e-6
            numeric[idx] = (scalar(*plus) - scalar(*minus)) / 2e-6
        assert_close(analytic, numeric, 1e-7, f"hard_sigmoid step gradient {k}")


def test_hard_sigmoid_model_gradients_against_central_differences():
    c = Config(vocab_size=5, hidden_size=4, num_layers=2, batch_size=2, seq_length=3, dtype="float64",
               recurrent_activation="hard_sigmoid", seed=2)
    weights = {k: v * (2.5 if k.startswith("lstm") else 1.0) for k, v in init_weights(c).items()}
    x, y, state, _ = probe_inputs(c, data_seed=4)
    for target in ("all", "last"):
        ct = Config(**{**c.to_dict(), "target": target})
        yt = y[:, -1:] if target == "last" else y
        model = lesson.CharLSTM(ct, weights)
        grads = model.gradients(x, yt, state)
        for name in ("lstm.0.W_x", "lstm.0.b", "lstm.1.W_h", "head.W"):
            numeric = np.zeros_like(weights[name])
            for idx in np.ndindex(numeric.shape):
                losses = []
                for eps in (1e-6, -1e-6):
                    w = {k: v.copy() for k, v in weights.items()}
                    w[name][idx] += eps
                    losses.append(lesson.CharLSTM(ct, w).evaluate(x, yt, state))
                numeric[idx] = (losses[0] - losses[1]) / 2e-6
            assert_close(grads[name], numeric, 1e-7, f"target {target} d loss / d {name}")


def test_numpy_fast_refuses_hard_sigmoid_in_one_sentence():
    c = config("hard_sigmoid")
    with pytest.raises(ConfigError) as e:
        make_model("numpy", c, init_weights(c), path="fast")
    assert str(e.value) == ("numpy's path 'fast' computes its gates as sigmoids only; use --path cell "
                            "for recurrent_activation hard_sigmoid.")


def test_target_last_sees_the_last_position_only_and_carries_nothing():
    c = config("last")
    x, y, _, _ = probe_inputs(c)
    for path in PATHS["numpy"]:
        model = make_model("numpy", c, init_weights(c), path=path)
        logits, _ = model.forward(x)
        z = logits[:, -1] - logits[:, -1].max(axis=1, keepdims=True)
        want = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y[:, 0]])
        assert abs(model.evaluate(x, y) - want) < 1e-12
        grads = model.gradients(x, y)
        first = model.train_step(x, y)
        assert abs(first - want) < 1e-12
        fresh = make_model("numpy", c, model.get_weights(), path=path)
        assert abs(model.train_step(x, y) - fresh.evaluate(x, y)) < 1e-12  # from zeros, not the carried state
        assert set(grads) == set(init_weights(c))


# ---------------------------------------------------------------------------------------------
# every framework and path against numpy

RUN = """
import json, sys, numpy as np
sys.path.insert(0, "tests")
from common.config import Config
from common.errors import ConfigError
from impl_probe import run_probe
framework, out, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
for n, (path, config) in enumerate(cases):
    try:
        result = run_probe(framework, path, Config(**config), 0, %d)
    except ConfigError as e:
        result = {"refused": np.array(str(e))}
    np.savez(f"{out}/case-{n}.npz", **result)
""" % STEPS


def run_framework(tmp_path, framework, paths, env=None):
    """{(path, feature): arrays} of every path and feature of `framework`, in one process."""
    keys = [(path, feature) for path in paths for feature in FEATURES]
    specs = [(path, config(feature).to_dict()) for path, feature in keys]
    return run_specs(RUN, framework, tmp_path, keys, specs, env, timeout=900)


def check_equal(got, want, what):
    tol = TOLERANCE["float64"]
    assert got["logits"].dtype == np.float64
    assert_close(got["logits"], want["logits"], tol["logits"], f"{what} logits")
    for l in range(SMALL["num_layers"]):
        assert_close(got[f"state_h{l}"], want[f"state_h{l}"], tol["logits"], f"{what} h{l}")
        assert_close(got[f"state_c{l}"], want[f"state_c{l}"], tol["logits"], f"{what} c{l}")
    assert_close(got["loss"], want["loss"], tol["loss"], f"{what} evaluate")
    for k in (k for k in want if k.startswith("grad/")):
        assert_close(got[k], want[k], tol["grads"], f"{what} {k}")
    assert np.ptp(got["train_loss"]) > 1e-3  # the weights moved
    assert_close(got["train_loss"], want["train_loss"], tol["loss"], f"{what} {STEPS} adam losses")
    for k in (k for k in want if k.startswith("weights/")):
        assert_close(got[k], want[k], 1e-9, f"{what} {k} after {STEPS} adam steps")


def references(formula):
    refs = {}
    for feature in FEATURES:
        for path in PATHS["numpy"]:
            if ("numpy", path, feature) not in REFUSED:
                refs[(path, feature)] = numpy_reference(config(feature), formula, path=path)
    # the features are on: clipping by value cuts some elements, the windows' y is (B, 1)
    grads = [v for k, v in refs[("cell", "clip_value")].items() if k.startswith("grad/")]
    assert max(np.abs(g).max() for g in grads) > 2 * FEATURES["clip_value"]["clip_value"]
    assert probe_inputs(config("last"))[1].shape == (SMALL["batch_size"], 1)
    return refs


def check_framework(results, framework, refs):
    for (path, feature), got in results.items():
        if (framework, path, feature) in REFUSED:
            assert "refused" in got, f"{framework} {path} should refuse {feature}"
            continue
        assert "refused" not in got, f"{framework} {path} {feature}: {got.get('refused')}"
        for numpy_path, feat in refs:
            if feat == feature:
                check_equal(got, refs[(numpy_path, feat)], f"{framework} {path} {feature} against numpy {numpy_path}:")


def test_torch_every_path_equals_numpy(tmp_path):
    results = run_framework(tmp_path, "torch", PATHS["torch"])
    check_framework(results, "torch", references("pytorch"))
    assert str(results[("layer", "hard_sigmoid")]["refused"]) == (
        "torch's nn.LSTM (path layer) has no recurrent_activation hard_sigmoid, only sigmoid; use --path cell.")


@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_keras_every_path_equals_numpy(tmp_path, backend):
    results = run_framework(tmp_path, "keras", paths_on("keras", backend), env={**os.environ, "KERAS_BACKEND": backend})
    check_framework(results, "keras", references("keras"))


# ---------------------------------------------------------------------------------------------
# the presets through the command line

def train(tmp_path, preset, framework, corpus, extra=()):
    """Per-step losses of `rosetta train --preset` for 5 small steps."""
    log = tmp_path / f"{preset}-{framework}.csv"
    cmd = [sys.executable, "-m", "common.cli", "train", "--preset", preset, "--framework", framework,
           "--iters", "5", "--hidden-size", "16", "--corpus", str(corpus), "--log", str(log),
           "--save", str(tmp_path / f"{preset}-{framework}.safetensors"), "--sample-every", "0", *extra]
    env = {**os.environ, "ROSETTA_DATA_DIR": str(data_dir() or "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    with open(log) as f:
        return np.array([float(r["loss"]) for r in csv.DictReader(f)]), proc.stdout


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_trains_alike_in_every_framework(tmp_path, preset):
    if data_dir() is None:
        pytest.skip("no local corpus: set ROSETTA_DATA_DIR")
    source = "quijote.txt" if PRESETS[preset].get("corpus") == "quijote" else "tinyshakespeare.txt"
    corpus = tmp_path / "small.txt"
    corpus.write_text((data_dir() / source).read_text(encoding="utf-8")[:30000], encoding="utf-8")
    numpy_losses, _ = train(tmp_path, preset, "numpy", corpus)
    assert len(numpy_losses) == 5 and np.all(np.isfinite(numpy_losses))
    settings = PRESETS[preset]
    torch_losses, _ = train(tmp_path, preset, "torch", corpus, ["--path", "cell"])
    assert_close(torch_losses, numpy_losses, 1e-4, f"{preset}: torch against numpy")
    keras_losses, _ = train(tmp_path, preset, "keras", corpus, ["--backend", "tensorflow"])
    # Keras' Adam puts epsilon outside the bias correction (numpy_impl/optim.py): the first step is
    # exact, the next ones within that difference; SGD (horas) is the same formula in both
    assert_close(keras_losses[:1], numpy_losses[:1], 1e-4, f"{preset}: keras first step")
    assert_close(keras_losses, numpy_losses, 1e-4 if settings.get("optimizer") == "sgd" else 1e-3,
                 f"{preset}: keras against numpy")
