"""keras_impl against numpy_impl (formula="keras": Keras' Adam puts epsilon outside the bias
correction, its Adagrad inside the square root) and against an independent keras.layers.LSTM
oracle (tests/keras_oracle.py), on every Keras backend, each in its own process (KERAS_BACKEND):
the paths layer and cell on all three, fast on TensorFlow. The checks and tolerances are shared
with test_torch.py: tests/equivalence.py.
"""

import ast
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from equivalence import (OPTIMIZERS, check_float32, check_forward_float64, check_oracle,
                         check_training_float64, config, run_cases)
from impl_probe import probe_inputs

from common.batches import training_steps
from common.frameworks import KERAS_BACKENDS, PATHS, paths_on
from common.weights import init_weights


def backend_env(backend):
    return {**os.environ, "KERAS_BACKEND": backend}


@pytest.fixture(scope="module", params=KERAS_BACKENDS)
def runs(request, tmp_path_factory):
    backend = request.param
    return backend, run_cases(tmp_path_factory.mktemp(f"keras-{backend}"), "keras", formula="keras",
                              paths=paths_on("keras", backend), env=backend_env(backend))


def runs_of(runs, path):
    backend, results = runs
    if path not in paths_on("keras", backend):
        pytest.skip(f"the path {path} runs on tensorflow only")
    return results


@pytest.mark.parametrize("path", PATHS["keras"])
def test_forward_state_loss_and_gradients_match_numpy_float64(runs, path):
    check_forward_float64(runs_of(runs, path), path)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("path", PATHS["keras"])
def test_training_with_clipping_matches_numpy_keras_formula_float64(runs, path, optimizer):
    check_training_float64(runs_of(runs, path), path, optimizer)


@pytest.mark.parametrize("path", PATHS["keras"])
def test_float32_matches_numpy(runs, path):
    check_float32(runs_of(runs, path), path)


def test_oracle_agrees_with_every_path_and_numpy(runs):
    check_oracle(runs[1], "keras")


def test_keras_formula_is_not_the_pytorch_one():
    """The equivalence above needs formula="keras": with the default the numbers really differ."""
    from numpy_impl.model import CharLSTM

    for optimizer in ("adagrad", "adam"):
        c = config("float64", optimizer)
        _, _, _, batches = probe_inputs(c, 0, 3)
        final = {}
        for formula in ("keras", "pytorch"):
            model = CharLSTM(c, init_weights(c), formula=formula)
            for _, xb, yb, _ in training_steps(batches, 3):
                model.train_step(xb, yb)
            final[formula] = model.get_weights()["lstm.0.W_h"]
        assert np.max(np.abs(final["keras"] - final["pytorch"])) > 1e-9, optimizer


def test_model_py_imports_no_backend_at_module_level():
    """keras_impl/model.py imports keras, never tensorflow, jax or torch, outside its functions
    (the per-backend gradient functions import their backend inside themselves)."""
    tree = ast.parse((ROOT / "keras_impl" / "model.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert not top & {"tensorflow", "jax", "jaxlib", "torch"}, top
    assert "keras" in top


PROMISES = """
import os, sys, numpy as np
import keras_impl.model as km
import keras
backend = keras.backend.backend()
assert backend == os.environ["KERAS_BACKEND"], backend
# (keras itself imports whichever of jax and torch is installed: only our own modules are checked)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {"torch_impl", "numpy_impl"})
assert not bad, f"keras_impl on {backend} imported {bad[:5]}"
from common.config import Config
from common.errors import ConfigError
from common.frameworks import make_model
from common.weights import init_weights
from keras_impl.plumbing import Interface
config = Config(vocab_size=7, hidden_size=4, num_layers=2, batch_size=2, seq_length=3, dtype="float64")
try:
    Interface(config, init_weights(config), path="rnn")
    raise AssertionError("path='rnn' accepted")
except ConfigError as e:
    assert "layer" in str(e) and "cell" in str(e), str(e)
if backend != "tensorflow":
    try:
        make_model("keras", config, init_weights(config), path="fast")
        raise AssertionError("path 'fast' accepted on " + backend)
    except ConfigError as e:
        assert str(e).count(".") == 1 and "tensorflow" in str(e) and backend in str(e), str(e)
rng = np.random.default_rng(0)
x, y = rng.integers(0, 7, (2, 3)), rng.integers(0, 7, (2, 3))
for path in ("layer", "cell"):
    model = Interface(config, init_weights(config), path=path)
    assert keras.config.floatx() == "float32", "the model changed keras' floatx"
    floats = [v for v in model.optimizer.variables if "int" not in str(v.dtype)]
    assert floats and all(v.dtype == "float64" for v in floats), [v.dtype for v in floats]
    xs = [rng.integers(0, 7, (2, 3)) for _ in range(3)]
    for xb in xs:
        model.train_step(xb, xb)
    carried = model.state  # that it is the right state: the equivalence tests' ten carried steps
    before = model.get_weights()
    logits, _ = model.forward(x); model.evaluate(x, y); model.gradients(x, y)
    assert logits.dtype == np.float64
    model.forward(x[:1, :1])  # another batch size and length
    for (h, c), (h2, c2) in zip(carried, model.state):
        assert np.array_equal(h, h2) and np.array_equal(c, c2), "carried state touched"
    assert any(np.any(h) for h, c in carried), "no state carried"
    after = model.get_weights()
    assert all(np.array_equal(before[k], after[k]) for k in before), "weights changed without a step"
    after["lstm.0.b"][0] += 1  # get_weights returns copies, not views of the variables
    assert not np.array_equal(model.get_weights()["lstm.0.b"], after["lstm.0.b"])
    model.reset_state()
    assert all(not np.any(h) and not np.any(c) for h, c in model.state)
print("ok")
"""


@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_keras_impl_keeps_its_promises_on_each_backend(backend):
    """In a fresh process per backend: no other implementation imported, unknown path refused, "fast"
    refused off TensorFlow in one sentence, keras' floatx untouched, float64 optimizer variables,
    the state carried by train_step and left alone by forward/evaluate/gradients, copies out."""
    proc = subprocess.run([sys.executable, "-c", PROMISES], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=backend_env(backend))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


KERAS_MODEL = """
import sys, numpy as np, keras
from common.config import Config
from common.frameworks import make_model
from common.weights import init_weights
from keras_impl import model as km
from keras_impl.plumbing import Interface
assert issubclass(km.CharLSTM, keras.Model) and km.CharLSTM.call is not keras.Model.call
config = Config(vocab_size=7, hidden_size=4, num_layers=2, batch_size=2, seq_length=3, dtype="float64", seed=3)
rng = np.random.default_rng(0)
xs, ys = rng.integers(0, 7, (3, 2, 3)), rng.integers(0, 7, (3, 2, 3))
for path in ("layer", "cell"):
    ours = make_model("keras", config, init_weights(config), path=path)
    assert type(ours) is Interface and isinstance(ours.model, km.CharLSTM) and ours.model.compiled
    # train_step is the compiled model's train_on_batch: the same steps taken by hand give the same weights
    plain = Interface(config, init_weights(config), path=path).model
    for x, y in zip(xs, ys):
        loss = ours.train_step(x, y)
        assert loss == plain.train_on_batch({"x": x.astype("int32"), "masks": None}, y.astype("int32")), path
    assert int(ours.model.optimizer.iterations) == len(xs) == int(plain.optimizer.iterations)
    assert all(np.array_equal(a, b) for a, b in zip(ours.model.get_weights(), plain.get_weights())), path
    # the trained weights round-trip through a Keras checkpoint into a model built from other weights
    path_h5 = f"{sys.argv[1]}/{path}.weights.h5"
    ours.model.save_weights(path_h5)
    other = Interface(config, init_weights(Config(**{**config.to_dict(), "seed": 4})), path=path)
    state = ours.zero_state(2)
    before = other.forward(xs[0], state)[0]
    assert not np.allclose(before, ours.forward(xs[0], state)[0])
    other.model.load_weights(path_h5)
    assert np.array_equal(other.forward(xs[0], state)[0], ours.forward(xs[0], state)[0]), path
    assert all(np.array_equal(other.get_weights()[k], v) for k, v in ours.get_weights().items())
    assert np.array_equal(other.state[1][1], ours.state[1][1])  # the carried state is a model variable too
    third = Interface(config, init_weights(config), path=path)
    third.model.set_weights(ours.model.get_weights())  # keras.Model.get_weights / set_weights: the same
    assert np.array_equal(third.forward(xs[1])[0], ours.forward(xs[1])[0]), path
print("ok")
"""


@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_charlstm_is_a_keras_model_trained_with_train_on_batch_and_its_weights_round_trip(backend, tmp_path):
    """keras_impl.model.CharLSTM subclasses keras.Model; make_model's Interface holds one, compiled, and its
    train_step gives the weights and losses of calling train_on_batch by hand; save_weights/load_weights
    of a .weights.h5 and get_weights/set_weights carry the weights to a model built from other weights
    (identical logits), on every backend."""
    proc = subprocess.run([sys.executable, "-c", KERAS_MODEL, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=backend_env(backend))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_compiled_cell_step_keeps_no_copy_of_w_h_and_copies_no_output_buffer():
    """XLA's optimized program for the fast path's train step (T=5, B=3, H=8): no (T, H, 4H) stack
    of W_h kept for the gradient, and no copy of the (T, B, H) output buffer carried through a loop.
    The levers' "before" variants, which bring each back, are caught by the same two counts."""
    script = """
import re, numpy as np, tensorflow as tf
import keras_impl.fast as km
from benchmarks import levers
from common.config import Config
from common.weights import init_weights
config = Config(vocab_size=11, hidden_size=8, num_layers=2, batch_size=3, seq_length=5)
x = tf.constant(np.random.default_rng(0).integers(0, 11, (3, 5)))
def counts():
    model = km.CharLSTM(config, init_weights(config), path="fast")
    hlo = model.graphs["train_step"].experimental_get_compiler_ir(x, x, model.state)(stage="optimized_hlo")
    return (len(re.findall(r"f32\\[5,8,32\\]", hlo)),  # W_h (8, 32) stacked over T=5 steps
            len(re.findall(r"f32\\[5,3,8\\]\\{[0-9,]+\\} copy\\(%get-tuple-element", hlo)))  # a loop's (T, B, H)
shipped = km.LSTMLayer.call
print("shipped", *counts())
for variant in ("keras_w_h_in_loop", "keras_tensorarray_write"):
    getattr(levers, variant)("keras", "fast", {})
    print(variant, *counts())
    km.LSTMLayer.call = shipped
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=backend_env("tensorflow"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {name: (int(stack), int(copies)) for name, stack, copies in
              (line.split() for line in proc.stdout.splitlines() if line.startswith(("shipped ", "keras_")))}
    assert counts["shipped"] == (0, 0), counts
    assert counts["keras_w_h_in_loop"][0] > 0, counts  # the checks can see what they guard against
    assert counts["keras_tensorarray_write"][1] > 0, counts
