"""numpy_impl.optim: each optimizer and clipping, in both formulas, against steps worked by hand."""

import math

import numpy as np
import pytest

from common.config import Config
from common.errors import ConfigError
from numpy_impl.optim import (FORMULAS, SGD, Adagrad, Adam, KerasAdagrad, KerasAdam, clip_by_global_norm,
                              clip_by_value, keras_clip_by_global_norm, make_optimizer)


def run(optimizer, gs, w0=1.0):
    """w after one step per gradient in gs, for a one-element parameter; also the other entry
    of a second tensor, which gets -g, to show that tensors are updated independently."""
    params = {"w": np.array([w0]), "u": np.array([[w0]])}
    for g in gs:
        optimizer.step(params, {"w": np.array([g]), "u": np.array([[-g]])})
    return params["w"][0], params["u"][0, 0]


def test_sgd():
    w, u = run(SGD(0.1), [0.5, -1.0])
    assert w == pytest.approx(1.0 - 0.1 * 0.5 + 0.1 * 1.0, rel=1e-15)  # 1.05
    assert u == pytest.approx(1.0 + 0.1 * 0.5 - 0.1 * 1.0, rel=1e-15)  # 0.95
    assert FORMULAS["pytorch"]["sgd"] is FORMULAS["keras"]["sgd"] is SGD  # both frameworks agree


def test_adam_pytorch_two_steps():
    lr, eps = 0.1, 1e-8
    # step 1, g = 0.5: m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025
    # m_hat = 0.05 / (1 - 0.9) = 0.5, v_hat = 0.00025 / (1 - 0.999) = 0.25, sqrt = 0.5
    w1 = 1.0 - lr * 0.5 / (0.5 + eps)
    # step 2, g = -1: m = 0.9 * 0.05 - 0.1 = -0.055, v = 0.999 * 0.00025 + 0.001 = 0.00124975
    m_hat = -0.055 / (1 - 0.9 ** 2)            # / 0.19
    v_hat = 0.00124975 / (1 - 0.999 ** 2)      # / 0.001999
    w2 = w1 - lr * m_hat / (math.sqrt(v_hat) + eps)
    assert w1 == pytest.approx(0.900000002, abs=1e-15)
    w, u = run(Adam(lr), [0.5, -1.0])
    assert w == pytest.approx(w2, rel=1e-14)
    assert w2 == pytest.approx(0.93661035424, abs=1e-11)
    assert u == pytest.approx(2.0 - w2, rel=1e-14)  # -g: the mirror image about 1


def test_adam_keras_two_steps():
    lr, eps = 0.1, 1e-8
    # epsilon outside the bias correction: alpha_t = lr * sqrt(1 - 0.999^t) / (1 - 0.9^t)
    alpha1 = lr * math.sqrt(0.001) / 0.1          # = sqrt(0.001)
    w1 = 1.0 - alpha1 * 0.05 / (math.sqrt(0.00025) + eps)
    alpha2 = lr * math.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2)
    w2 = w1 - alpha2 * -0.055 / (math.sqrt(0.00124975) + eps)
    assert w1 == pytest.approx(0.9000000632456, abs=1e-12)  # eps weighs sqrt(1/0.001) times more
    w, u = run(KerasAdam(lr), [0.5, -1.0])
    assert w == pytest.approx(w2, rel=1e-14)
    assert u == pytest.approx(2.0 - w2, rel=1e-14)
    assert abs(w2 - run(Adam(lr), [0.5, -1.0])[0]) > 1e-8  # the two formulas do differ


def test_adagrad_pytorch_three_steps():
    lr, eps = 0.5, 1e-10
    # s = 4, then 4 + 1 = 5, then 5 + 0.25 = 5.25
    w3 = 1.0 - lr * 2 / (2 + eps) - lr * -1 / (math.sqrt(5) + eps) - lr * 0.5 / (math.sqrt(5.25) + eps)
    w, u = run(Adagrad(lr), [2.0, -1.0, 0.5])
    assert w == pytest.approx(w3, rel=1e-15)
    assert w == pytest.approx(1 - 0.5 + 0.5 / math.sqrt(5) - 0.25 / math.sqrt(5.25), abs=1e-9)
    assert u == pytest.approx(2.0 - w3, rel=1e-15)


def test_adagrad_epsilon_inside_or_outside_the_root():
    lr, g = 0.5, 1e-5  # g^2 = 1e-10 = eps: where eps goes matters
    w, _ = run(Adagrad(lr), [g])
    assert w == pytest.approx(1.0 - lr * g / (1e-5 + 1e-10), rel=1e-15)   # 1 - 0.5 / 1.00001
    w, _ = run(KerasAdagrad(lr), [g])
    assert w == pytest.approx(1.0 - lr * g / math.sqrt(1e-10 + 1e-10), rel=1e-15)  # 1 - 0.5 / sqrt 2
    w, _ = run(KerasAdagrad(lr), [2.0, -1.0])
    assert w == pytest.approx(1.0 - lr * 2 / math.sqrt(4 + 1e-10) + lr / math.sqrt(5 + 1e-10), rel=1e-15)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam"])
@pytest.mark.parametrize("formula", ["pytorch", "keras"])
def test_make_optimizer_and_float32(name, formula):
    config = Config(optimizer=name, learning_rate=0.01)
    opt = make_optimizer(config, formula)
    assert type(opt) is FORMULAS[formula][name] and opt.lr == 0.01
    params = {"w": np.ones((2, 3), np.float32)}
    for _ in range(3):
        opt.step(params, {"w": np.full((2, 3), 0.3, np.float32)})
        assert params["w"].dtype == np.float32
    assert params["w"][0, 0] < 1.0  # it moved against the gradient
    with pytest.raises(ConfigError, match="unknown optimizer formula 'jax'"):
        make_optimizer(config, "jax")


def grads345():
    return {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}  # global norm 5


def test_clip_pytorch():
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5)}
    expected = np.sqrt(sum((g ** 2).sum() for g in grads.values()))
    copy = {k: v.copy() for k, v in grads.items()}
    _, norm = clip_by_global_norm(grads, 100.0)
    assert norm == pytest.approx(expected, rel=1e-14)
    for k in grads:  # below max_norm: untouched
        np.testing.assert_array_equal(grads[k], copy[k])
    clipped, norm = clip_by_global_norm(grads345(), 1.0)
    assert norm == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_allclose(clipped["a"], [3 / (5 + 1e-6), 0.0], rtol=1e-15)
    np.testing.assert_allclose(clipped["b"], [[4 / (5 + 1e-6)]], rtol=1e-15)
    clipped, norm = clip_by_global_norm(grads345(), 0.0)  # 0 = off
    assert norm == pytest.approx(5.0) and clipped["b"][0, 0] == 4.0
    assert FORMULAS["pytorch"]["clip"] is clip_by_global_norm


def test_clip_keras():
    clipped, norm = keras_clip_by_global_norm(grads345(), 1.0)
    assert norm == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_allclose(clipped["a"], [3 * 1.0 * 0.2, 0.0], rtol=1e-15)  # max_norm * (1 / norm)
    np.testing.assert_allclose(clipped["b"], [[4 * 0.2]], rtol=1e-15)
    clipped, _ = keras_clip_by_global_norm(grads345(), 10.0)
    np.testing.assert_allclose(clipped["a"], [3.0, 0.0], rtol=1e-15)  # 10 * (1 / 10)
    clipped, _ = keras_clip_by_global_norm(grads345(), 0.0)
    assert clipped["b"][0, 0] == 4.0
    with np.errstate(invalid="ignore"):  # inf - inf
        clipped, _ = keras_clip_by_global_norm({"a": np.array([np.inf, 1.0])}, 1.0)
    assert np.isnan(clipped["a"]).all()  # a non-finite norm poisons every gradient, as in Keras
    assert FORMULAS["keras"]["clip"] is keras_clip_by_global_norm


def test_clip_keeps_float32():
    grads = {"a": np.full((2, 2), 3.0, np.float32)}
    for clip in (clip_by_global_norm, keras_clip_by_global_norm):
        g, norm = clip({k: v.copy() for k, v in grads.items()}, 1.0)
        assert g["a"].dtype == np.float32 and np.asarray(norm).dtype == np.float32
        np.testing.assert_allclose(g["a"], 0.5, rtol=1e-6)


def test_clip_by_value_element_by_element():
    grads = {"a": np.array([[-3.0, -1.0, -0.5], [0.0, 0.5, 2.5]]), "b": np.array([1.0, -1.0, np.nan, np.inf])}
    a_before = grads["a"]
    clipped = clip_by_value(grads, 1.0)
    assert clipped["a"] is a_before  # in place, as torch's clip_grad_value_
    expected_a = [[max(-1.0, min(1.0, v)) for v in row] for row in [[-3.0, -1.0, -0.5], [0.0, 0.5, 2.5]]]
    assert clipped["a"].tolist() == expected_a == [[-1.0, -1.0, -0.5], [0.0, 0.5, 1.0]]
    assert clipped["b"][[0, 1, 3]].tolist() == [1.0, -1.0, 1.0] and np.isnan(clipped["b"][2])  # NaN stays NaN
    rng = np.random.default_rng(0)
    g = rng.normal(0, 2, (50, 40)).astype(np.float32)
    out = clip_by_value({"g": g.copy()}, 0.75)["g"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.where(g > 0.75, np.float32(0.75), np.where(g < -0.75, np.float32(-0.75), g)))
    assert (np.abs(g) > 0.75).any() and (np.abs(g) < 0.75).any()  # both sides of the bound were exercised
    untouched = clip_by_value({"g": g.copy()}, 0.0)["g"]  # 0 = off
    np.testing.assert_array_equal(untouched, g)
    assert FORMULAS["pytorch"]["clip_value"] is FORMULAS["keras"]["clip_value"] is clip_by_value
