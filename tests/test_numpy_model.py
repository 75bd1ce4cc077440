"""numpy_impl, both paths (the lesson numpy_impl/model.py, "cell", and the tuned numpy_impl/fast.py,
"fast"): the hand-written backward against finite differences, the forward against a plain loop
written here from docs/DESIGN.md's equations, fast against the lesson to float64 rounding, state
carrying, dtypes and refusals."""

import numpy as np
import pytest
from equivalence import OPTIMIZERS, numpy_reference
from equivalence import config as equivalence_config

from common.config import Config
from common.errors import CheckpointError, ConfigError
from common.frameworks import PATHS, model_class
from common.weights import init_weights

V, H, L, B, T = 11, 8, 2, 3, 5
NUMPY_PATHS = PATHS["numpy"]  # ("cell", "fast")
FAST_TOLERANCE = 1e-12  # fast against the lesson: the same arithmetic in another order, float64 rounding


def CharLSTM(config, weights, path="cell", **kw):  # noqa: N802 (stands for the class of `path`)
    return model_class("numpy", path)(config, weights, path=path, **kw)


def small(**kw):
    return Config(**{"vocab_size": V, "hidden_size": H, "num_layers": L, "batch_size": B,
                     "seq_length": T, "dtype": "float64", "seed": 3, **kw})


def batch(seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, size=(B, T))
    y = rng.integers(0, V, size=(B, T))
    state = [(rng.uniform(-0.5, 0.5, (B, H)).astype(dtype), rng.uniform(-0.5, 0.5, (B, H)).astype(dtype))
             for _ in range(L)]
    return x, y, state


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def reference_forward(w, x, state):
    """docs/DESIGN.md's equations, one-hot input, one step and one layer at a time: (logits, state)."""
    inputs = [np.eye(V)[x[:, t]] for t in range(T)]  # one-hot (B, V) per step
    new_state = []
    for l in range(L):
        h, c = state[l]
        outputs = []
        for x_t in inputs:
            z = x_t @ w[f"lstm.{l}.W_x"] + h @ w[f"lstm.{l}.W_h"] + w[f"lstm.{l}.b"]
            i, f = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H])
            g, o = np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
            outputs.append(h)
        new_state.append((h, c))
        inputs = outputs
    logits = np.stack([h_t @ w["head.W"] + w["head.b"] for h_t in inputs], axis=1)  # (B, T, V)
    return logits, new_state


def reference_loss(logits, y):
    """Mean over B*T of -log softmax(logits)[y], written the naive way."""
    p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return float(np.mean(-np.log(np.take_along_axis(p, y[..., None], axis=-1))))


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_forward_matches_the_equations(path):
    config = small()
    w = init_weights(config)
    x, _, state = batch()
    logits, new_state = CharLSTM(config, w, path).forward(x, state=state)
    ref_logits, ref_state = reference_forward(w, x, state)
    assert logits.shape == (B, T, V)
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-13)
    for (h, c), (rh, rc) in zip(new_state, ref_state):
        np.testing.assert_allclose(h, rh, rtol=0, atol=1e-13)
        np.testing.assert_allclose(c, rc, rtol=0, atol=1e-13)


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_forward_with_no_state_starts_from_zeros(path):
    config = small()
    w = init_weights(config)
    x, _, _ = batch()
    zeros = [(np.zeros((B, H)), np.zeros((B, H)))] * L
    np.testing.assert_allclose(CharLSTM(config, w, path).forward(x)[0], reference_forward(w, x, zeros)[0],
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_one_step_calls_chain_like_one_call(path):
    model = CharLSTM(small(), init_weights(small()), path)
    x, _, state = batch()
    logits, final = model.forward(x, state=state)
    s = state
    for t in range(T):
        step_logits, s = model.forward(x[:, t:t + 1], state=s)
        np.testing.assert_allclose(step_logits[:, 0], logits[:, t], rtol=0, atol=1e-13)
    for (h, c), (h1, c1) in zip(final, s):
        np.testing.assert_allclose(h1, h, rtol=0, atol=1e-13)
        np.testing.assert_allclose(c1, c, rtol=0, atol=1e-13)


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_evaluate_is_the_mean_cross_entropy(path):
    config = small()
    w = init_weights(config)
    x, y, state = batch()
    model = CharLSTM(config, w, path)
    assert model.evaluate(x, y, state=state) == pytest.approx(reference_loss(reference_forward(w, x, state)[0], y), abs=1e-13)
    zeros = [(np.zeros((B, H)), np.zeros((B, H)))] * L
    assert model.evaluate(x, y) == pytest.approx(reference_loss(reference_forward(w, x, zeros)[0], y), abs=1e-13)
    assert isinstance(model.evaluate(x, y), float)


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_every_gradient_against_central_differences(path):
    """Relative error < 1e-6 on sampled entries of every tensor (biases in full), nonzero state.

    The loss is known to ~1e-16, so a difference quotient carries ~1e-11 of rounding: entries
    whose gradient is below 1e-4 are held to 1e-10 absolute instead (the floor of the denominator).
    """
    config = small()
    w = init_weights(config)
    rng = np.random.default_rng(1)
    for name in w:  # move off the initial values: zero biases and unit forget bias are special
        w[name] = w[name] + rng.normal(0, 0.1, w[name].shape)
    x, y, state = batch(2)
    grads = CharLSTM(config, w, path).gradients(x, y, state=state)
    assert list(grads) == list(w)
    eps = 1e-5
    for name, g in grads.items():
        assert g.shape == w[name].shape and g.dtype == np.float64, name
        flat = range(g.size) if g.ndim == 1 else rng.choice(g.size, size=min(g.size, 40), replace=False)
        for k in flat:
            idx = np.unravel_index(k, g.shape)
            plus, minus = dict(w), dict(w)
            plus[name], minus[name] = w[name].copy(), w[name].copy()
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric = (CharLSTM(config, plus, path).evaluate(x, y, state=state)
                       - CharLSTM(config, minus, path).evaluate(x, y, state=state)) / (2 * eps)
            rel = abs(numeric - g[idx]) / max(abs(numeric) + abs(g[idx]), 1e-4)
            assert rel < 1e-6, f"{name}{idx}: analytic {g[idx]}, numeric {numeric}"


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_gradients_and_evaluate_touch_neither_weights_nor_carried_state(path):
    config = small()
    model = CharLSTM(config, init_weights(config), path)
    x, y, state = batch()
    model.train_step(x, y)  # a carried state that is not zeros
    weights = model.get_weights()
    carried = [(h.copy(), c.copy()) for h, c in model.state]
    g1 = model.gradients(x, y, state=state)
    model.evaluate(x, y, state=state)
    model.forward(x, state=state)
    g2 = model.gradients(x, y)
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(w, weights[name])
    for (h, c), (h0, c0) in zip(model.state, carried):
        np.testing.assert_array_equal(h, h0)
        np.testing.assert_array_equal(c, c0)
    assert not np.allclose(g1["head.W"], g2["head.W"])  # the given state was used
    g1["head.W"][:] = 0  # the returned arrays are the caller's
    np.testing.assert_array_equal(model.get_weights()["head.W"], weights["head.W"])


def test_kept_buffers_never_reach_what_the_caller_holds():
    """The fast path reuses its big arrays from step to step (Buffers): logits, state and gradients
    handed out earlier must not change when later calls write those arrays again."""
    config = small()
    model = CharLSTM(config, init_weights(config), "fast")
    (x1, y1, s1), (x2, y2, s2) = batch(0), batch(1)
    logits, state = model.forward(x1, s1)
    grads = model.gradients(x1, y1, s1)
    held = logits.copy(), [(h.copy(), c.copy()) for h, c in state], {k: g.copy() for k, g in grads.items()}
    gates = model.layer_buffers[0].arrays["gates"]
    logits2, _ = model.forward(x2, s2)
    model.gradients(x2, y2, s2)
    model.train_step(x2, y2)
    model.forward(x2[:1, :2])  # another shape (as sampling uses) gets arrays of its own
    assert model.layer_buffers[0].arrays["gates"].shape == (2, 4 * H, 1)
    assert not np.allclose(logits, logits2)  # the second batch did write other numbers
    np.testing.assert_array_equal(logits, held[0])
    for (h, c), (h0, c0) in zip(state, held[1]):
        np.testing.assert_array_equal(h, h0)
        np.testing.assert_array_equal(c, c0)
    for name, g in grads.items():
        np.testing.assert_array_equal(g, held[2][name])
    model.forward(x1, s1)
    assert model.layer_buffers[0].arrays["gates"] is not gates  # reallocated after the shape change
    again = model.layer_buffers[0].arrays["gates"]
    model.train_step(x1, y1)
    assert model.layer_buffers[0].arrays["gates"] is again  # and kept from then on


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_train_step_carries_the_state_and_reset_zeros_it(path):
    config = small(learning_rate=0.05)
    w = init_weights(config)
    model = CharLSTM(config, w, path)
    x1, y1, _ = batch(5)
    x2, y2, _ = batch(6)
    zeros = [(np.zeros((B, H)), np.zeros((B, H)))] * L
    loss1 = model.train_step(x1, y1)
    assert loss1 == pytest.approx(reference_loss(reference_forward(w, x1, zeros)[0], y1), abs=1e-13)
    after = model.get_weights()
    assert not np.allclose(after["head.W"], w["head.W"])  # one update happened
    _, left = reference_forward(w, x1, zeros)  # the state left by the first batch, old weights
    for (h, c), (rh, rc) in zip(model.state, left):
        np.testing.assert_allclose(h, rh, rtol=0, atol=1e-13)
        np.testing.assert_allclose(c, rc, rtol=0, atol=1e-13)
    expected = reference_loss(reference_forward(after, x2, left)[0], y2)
    assert expected != pytest.approx(reference_loss(reference_forward(after, x2, zeros)[0], y2), abs=1e-6)
    assert model.train_step(x2, y2) == pytest.approx(expected, abs=1e-13)
    model.reset_state()
    for h, c in model.state:
        assert h.shape == c.shape == (B, H)
        np.testing.assert_array_equal(h, 0)
        np.testing.assert_array_equal(c, 0)
    w3 = model.get_weights()
    assert model.train_step(x1, y1) == pytest.approx(reference_loss(reference_forward(w3, x1, zeros)[0], y1), abs=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adam"])
@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_float32_stays_float32(path, optimizer):
    config = small(dtype="float32", optimizer=optimizer, clip_norm=0.1)
    model = CharLSTM(config, init_weights(config), path)
    x, y, state = batch(dtype="float32")
    logits, new_state = model.forward(x, state=state)
    assert logits.dtype == np.float32
    assert all(h.dtype == c.dtype == np.float32 for h, c in new_state)
    assert all(g.dtype == np.float32 for g in model.gradients(x, y, state=state).values())
    assert isinstance(model.train_step(x, y), float)
    model.train_step(x, y)
    assert all(h.dtype == c.dtype == np.float32 for h, c in model.state)
    assert all(w.dtype == np.float32 for w in model.get_weights().values())
    for name, m in getattr(model.optimizer, "m", {}).items():
        assert m.dtype == model.optimizer.v[name].dtype == np.float32
    # float32 computes the same model as float64, to float32 precision
    config64 = small(optimizer=optimizer)
    logits64, _ = CharLSTM(config64, init_weights(config64), path).forward(x, state=[(h.astype(np.float64), c.astype(np.float64)) for h, c in state])
    np.testing.assert_allclose(logits, logits64, rtol=0, atol=1e-5)


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_weights_that_do_not_fit_name_the_tensor(path):
    config = small()
    w = init_weights(config)
    with pytest.raises(CheckpointError, match=r"tensor 'lstm\.1\.W_h' in the weights has shape \(9, 32\)"):
        CharLSTM(config, {**w, "lstm.1.W_h": np.zeros((9, 32))}, path)
    with pytest.raises(CheckpointError, match=r"lack tensor 'head\.b'"):
        CharLSTM(config, {k: v for k, v in w.items() if k != "head.b"}, path)


@pytest.mark.parametrize("path", NUMPY_PATHS)
def test_unknown_path_and_formula_are_refused(path):
    config = small()
    with pytest.raises(ConfigError, match=rf"^numpy has no path 'layer'; choose one of {path}\.$"):
        model_class("numpy", path)(config, init_weights(config), path="layer")
    with pytest.raises(ConfigError, match=r"unknown optimizer formula 'tf'; choose one of pytorch, keras"):
        CharLSTM(config, init_weights(config), path, formula="tf")


@pytest.mark.parametrize("formula", ["pytorch", "keras"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_fast_matches_the_lesson_to_float64_rounding(optimizer, formula):
    """numpy_impl/fast.py against numpy_impl/model.py on tests/equivalence.py's batch (random initial
    state, clipping active at every step): logits, state, loss, every gradient, and the losses and
    weights of ten optimizer steps, all within FAST_TOLERANCE."""
    config = equivalence_config("float64", optimizer)
    lesson = numpy_reference(config, formula, path="cell")
    fast = numpy_reference(config, formula, path="fast")
    assert sorted(fast) == sorted(lesson)
    assert len(lesson["train_loss"]) == 10 and np.ptp(lesson["train_loss"]) > 1e-3  # the weights moved
    assert any(k.startswith("grad/") for k in lesson) and any(k.startswith("weights/") for k in lesson)
    for k, want in lesson.items():
        assert fast[k].dtype == want.dtype == np.float64, k
        np.testing.assert_allclose(fast[k], want, rtol=0, atol=FAST_TOLERANCE, err_msg=k)
