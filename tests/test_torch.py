"""torch_impl, every path (PATHS["torch"]: nn.LSTM and the nn.Module cell), against both numpy_impl
paths (formula="pytorch": torch autograd against the hand-written backward) and against an
independent nn.LSTM oracle (tests/torch_oracle.py). The checks and tolerances are shared with
test_keras.py: tests/equivalence.py.
"""

import subprocess
import sys

import pytest
from conftest import ROOT
from equivalence import (OPTIMIZERS, PATHS, check_float32, check_forward_float64, check_oracle,
                         check_training_float64, run_cases)

TORCH_PATHS = PATHS["torch"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return run_cases(tmp_path_factory.mktemp("torch"), "torch", formula="pytorch")


@pytest.mark.parametrize("path", TORCH_PATHS)
def test_forward_state_loss_and_gradients_match_numpy_float64(runs, path):
    check_forward_float64(runs, path)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("path", TORCH_PATHS)
def test_training_with_clipping_matches_numpy_float64(runs, path, optimizer):
    check_training_float64(runs, path, optimizer)  # layer path: b = bias_ih + bias_hh


@pytest.mark.parametrize("path", TORCH_PATHS)
def test_float32_matches_numpy(runs, path):
    check_float32(runs, path)


def test_oracle_agrees_with_every_path_and_numpy(runs):
    check_oracle(runs, "torch")


def test_torch_impl_imports_no_keras_and_keeps_its_promises():
    """In a fresh process: no tensorflow/keras import, unknown path refused, global dtype untouched,
    evaluate/gradients/forward leave the carried training state alone."""
    script = """
import sys, numpy as np, torch
import torch_impl.plumbing as tp
from common.config import Config
from common.frameworks import PATHS, make_model
from common.weights import init_weights
tiny = Config(vocab_size=3, hidden_size=2, num_layers=1, batch_size=1, seq_length=1)
for path in PATHS["torch"]:  # every module of every path imported and built
    make_model("torch", tiny, init_weights(tiny), path=path)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
assert not bad, f"torch_impl imported {bad[:5]}"
from common.errors import ConfigError
config = Config(vocab_size=7, hidden_size=4, num_layers=2, batch_size=2, seq_length=3, dtype="float64")
try:
    tp.Interface(config, init_weights(config), path="rnn")
    raise AssertionError("path='rnn' accepted")
except ConfigError as e:
    assert "layer" in str(e) and "cell" in str(e), str(e)
rng = np.random.default_rng(0)
x, y = rng.integers(0, 7, (2, 3)), rng.integers(0, 7, (2, 3))
for path in PATHS["torch"]:
    model = make_model("torch", config, init_weights(config), path=path)
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


def test_char_lstm_is_an_nn_module_whose_state_dict_round_trips_and_device_is_checked():
    """In a fresh process: torch_impl.model.CharLSTM is an nn.Module whose forward takes a LongTensor
    and returns tensors; the state_dict of an Interface's model, loaded into a fresh CharLSTM, gives
    the same logits and the same interchange weights; the lesson's train_step driven directly (its own
    optimizer, the state passed back in) takes the Interface's steps; device="cpu" runs on the CPU
    and a device torch does not have here is refused in one sentence."""
    script = """
import numpy as np, torch
from torch import nn
from common.config import Config
from common.errors import ConfigError
from common.frameworks import make_model
from common.weights import init_weights
from torch_impl.model import CharLSTM, make_optimizer
from torch_impl.plumbing import Interface, parameter_names
config = Config(vocab_size=7, hidden_size=4, num_layers=2, batch_size=2, seq_length=3, dtype="float64",
                optimizer="adam", clip_norm=0.05)
weights = init_weights(config)
rng = np.random.default_rng(0)
x, y = rng.integers(0, 7, (2, 3)), rng.integers(0, 7, (2, 3))
assert issubclass(CharLSTM, nn.Module)
for path in ("layer", "cell"):
    interface = make_model("torch", config, weights, path=path, device="cpu")
    assert isinstance(interface, Interface) and isinstance(interface.model, CharLSTM)
    assert str(interface.device) == "cpu" and all(p.device.type == "cpu" for p in interface.model.parameters())
    fresh = CharLSTM(config, path)
    fresh.load_state_dict(interface.model.state_dict())
    for name, key in parameter_names(path, config.num_layers).items():  # the interchange weights, as loaded
        w = fresh.get_parameter(key).detach().numpy()
        assert np.array_equal(w.T if w.ndim == 2 and (path == "layer" or name == "head.W") else w, weights[name]), name
    logits, state = fresh(torch.as_tensor(x))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3, 7) and logits.requires_grad
    assert all(isinstance(t, torch.Tensor) and t.shape == (2, 4) for hc in state for t in hc)
    assert np.array_equal(logits.detach().numpy(), interface.forward(x)[0])
    optimizer, carried = make_optimizer(config, fresh.parameters()), None
    for _ in range(3):
        loss, carried = fresh.train_step(optimizer, torch.as_tensor(x), torch.as_tensor(y), carried)
        assert loss == interface.train_step(x, y) and not carried[0][0].requires_grad
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, interface.model.state_dict()[key]), key
for device in (("cuda:99",) if torch.cuda.is_available() else ("cuda",)) + ("no-such-device",):
    try:
        make_model("torch", config, weights, device=device)
        raise AssertionError(f"device {device} accepted")
    except ConfigError as e:
        assert str(e).startswith(f"torch has no device {device!r} here: ") and str(e).endswith("choose cpu" + (" or cuda." if torch.cuda.is_available() else ".")), str(e)
        assert "\\n" not in str(e), str(e)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
