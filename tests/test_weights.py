"""Initial weights: shapes, dtypes, seeds, and each initializer's defining property."""

import numpy as np
import pytest

from common.config import Config
from common.errors import CheckpointError
from common.weights import check_weights, init_weights, weight_shapes


def small(**kw):
    return Config(**{"vocab_size": 11, "hidden_size": 8, "num_layers": 3, **kw})


def test_shapes_and_order():
    assert weight_shapes(small()) == {
        "lstm.0.W_x": (11, 32), "lstm.0.W_h": (8, 32), "lstm.0.b": (32,),
        "lstm.1.W_x": (8, 32), "lstm.1.W_h": (8, 32), "lstm.1.b": (32,),
        "lstm.2.W_x": (8, 32), "lstm.2.W_h": (8, 32), "lstm.2.b": (32,),
        "head.W": (8, 11), "head.b": (11,)}
    assert list(weight_shapes(small())) == list(init_weights(small()))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_and_shapes(dtype):
    config = small(dtype=dtype)
    for name, w in init_weights(config).items():
        assert w.dtype == np.dtype(dtype) and w.shape == weight_shapes(config)[name], name


def test_reproducible_by_seed():
    a, b, c = init_weights(small(seed=3)), init_weights(small(seed=3)), init_weights(small(seed=4))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["lstm.0.W_x"], c["lstm.0.W_x"])
    # float32 weights are the float64 ones rounded: the same starting point in both precisions
    f32 = init_weights(small(seed=3, dtype="float32"))
    for name in a:
        np.testing.assert_array_equal(f32[name], a[name].astype(np.float32))


def test_biases():
    H = 8
    w = init_weights(small())
    for l in range(3):
        b = w[f"lstm.{l}.b"]
        np.testing.assert_array_equal(b[H:2 * H], 1.0)  # forget gate
        np.testing.assert_array_equal(b[:H], 0.0)
        np.testing.assert_array_equal(b[2 * H:], 0.0)
    np.testing.assert_array_equal(w["head.b"], 0.0)


def test_orthogonal_recurrent_kernels():
    w = init_weights(small(hidden_size=16, dtype="float64"))
    for l in range(3):
        W_h = w[f"lstm.{l}.W_h"]  # (H, 4H): orthonormal rows
        np.testing.assert_allclose(W_h @ W_h.T, np.eye(16), atol=1e-12)
    assert not np.allclose(w["lstm.0.W_h"], w["lstm.1.W_h"])


def test_glorot_uniform_limits_and_variance():
    config = Config(vocab_size=65, hidden_size=64, num_layers=2, dtype="float64", seed=0)
    w = init_weights(config)
    for name in ("lstm.0.W_x", "lstm.1.W_x", "head.W"):
        fan_in, fan_out = w[name].shape
        limit = np.sqrt(6 / (fan_in + fan_out))
        assert np.abs(w[name]).max() <= limit
        assert np.abs(w[name]).max() > 0.95 * limit  # the whole range is used
        assert abs(w[name].mean()) < 0.05 * limit
        # U(-a, a) has variance a^2 / 3 = 2 / (fan_in + fan_out); thousands of samples: within 10 %
        assert w[name].var() == pytest.approx(2 / (fan_in + fan_out), rel=0.1), name


def test_check_weights_accepts_init_and_names_problems():
    config = small(num_layers=2)
    w = init_weights(config)
    check_weights(w, config)
    with pytest.raises(CheckpointError, match=r"^the weights lack tensor 'lstm\.1\.b' \(shape \(32,\)\) and 1 more;"):
        check_weights({k: v for k, v in w.items() if k not in ("lstm.1.b", "head.b")}, config)
    with pytest.raises(CheckpointError, match=r"^the weights hold tensor 'lstm\.2\.b', which a model of 2 layer"):
        check_weights({**w, "lstm.2.b": np.zeros(32)}, config)
    with pytest.raises(CheckpointError, match=r"^tensor 'lstm\.0\.W_x' in the weights has shape \(12, 32\), "
                                              r"but this config \(V=11, H=8\) needs \(11, 32\)"):
        check_weights({**w, "lstm.0.W_x": np.zeros((12, 32))}, config)
